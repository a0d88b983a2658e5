/* seccomp_rules.h — the allowlist as libseccomp rules (build time only). */
#ifndef AEGIS_SECCOMP_RULES_H
#define AEGIS_SECCOMP_RULES_H

#include <seccomp.h>

/* Add every rule to ctx (created with default action ERRNO(EPERM)). */
int seccomp_rules_add(scmp_filter_ctx ctx);

#endif
