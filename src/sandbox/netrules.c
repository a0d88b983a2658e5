/* PLACEHOLDER (being written by the network helper; this file will be replaced whole). */
#include "../common/error.h"
#include "netrules.h"
int netrules_parse_rule(const char *t, struct net_rule *o, struct aegis_error *e) { (void)t; (void)o; return error_set(e, AEGIS_E_UNSUPPORTED, 0, "network rules: not built yet"); }
int netrules_parse_host(const char *t, struct net_host *o, struct aegis_error *e) { (void)t; (void)o; return error_set(e, AEGIS_E_UNSUPPORTED, 0, "network rules: not built yet"); }
int netrules_load(const struct aegis_policy *p, struct net_rules *o, struct aegis_error *e) { (void)p; (void)o; return error_set(e, AEGIS_E_UNSUPPORTED, 0, "network rules: not built yet"); }
void netrules_free(struct net_rules *r) { (void)r; }
bool netrules_allow_target(const struct net_rules *r, const char *h, uint16_t p, const struct net_rule **m, const char **w) { (void)r; (void)h; (void)p; (void)m; *w = "not built"; return false; }
bool netrules_allow_address(const struct net_rules *r, const struct net_rule *m, const struct sockaddr *sa, bool mp, const char **w) { (void)r; (void)m; (void)sa; (void)mp; *w = "not built"; return false; }
