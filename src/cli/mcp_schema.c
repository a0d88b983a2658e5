/* mcp_schema.c — the subset of JSON Schema our tools' inputs use, checked
 * by hand: type, properties, required, additionalProperties, items,
 * minItems, maxItems, minLength, maxLength, minimum, maximum, enum. The
 * same schema text is what tools/list shows the model, so what it reads
 * is exactly what is enforced; a keyword outside the subset is refused
 * when the tools are loaded rather than silently not checked. */
#include <stdio.h>
#include <string.h>

#include "mcp.h"

/* Keywords that only describe. */
static const char *const notes[] = { "description", "title", "default", "examples", NULL };
static const char *const checks[] = { "type", "properties", "required", "additionalProperties", "items",
				      "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
				      "enum", NULL };

static bool listed(const char *const *list, const char *key)
{
	for (size_t i = 0; list[i]; i++)
		if (!strcmp(list[i], key))
			return true;
	return false;
}

int mcp_schema_known(const json_t *schema, char *why, size_t len)
{
	const char *key;
	json_t *v, *p;

	if (!json_is_object(schema)) {
		snprintf(why, len, "a schema must be an object");
		return -1;
	}
	json_object_foreach((json_t *)schema, key, v) {
		if (!listed(notes, key) && !listed(checks, key)) {
			snprintf(why, len, "schema keyword '%s' is not checked by mcp_schema.c", key);
			return -1;
		}
	}
	if ((v = json_object_get(schema, "items")) && mcp_schema_known(v, why, len) < 0)
		return -1;
	if ((v = json_object_get(schema, "additionalProperties")) && !json_is_boolean(v) &&
	    mcp_schema_known(v, why, len) < 0)
		return -1;
	json_object_foreach(json_object_get(schema, "properties"), key, p)
		if (mcp_schema_known(p, why, len) < 0)
			return -1;
	return 0;
}

static const char *type_of(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

static bool is_type(const json_t *v, const char *type)
{
	const char *t = type_of(v);

	/* an integer is a number too */
	return !strcmp(t, type) || (!strcmp(type, "number") && !strcmp(t, "integer"));
}

static int fail(char *why, size_t len, const char *at, const char *what)
{
	snprintf(why, len, "%s: %s", *at ? at : "arguments", what);
	return -1;
}

/* Characters, not bytes: what JSON Schema's lengths count. */
static size_t utf8_chars(const char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

static int check_type(const json_t *schema, const json_t *v, const char *at, char *why, size_t len)
{
	const json_t *t = json_object_get(schema, "type"), *one;
	char what[160];
	size_t i;

	if (!t)
		return 0;
	if (json_is_string(t) && is_type(v, json_string_value(t)))
		return 0;
	json_array_foreach(t, i, one)
		if (is_type(v, json_string_value(one)))
			return 0;
	if (json_is_string(t))
		snprintf(what, sizeof what, "must be %s %s, not %s",
			 strchr("aeiou", json_string_value(t)[0]) ? "an" : "a", json_string_value(t), type_of(v));
	else
		snprintf(what, sizeof what, "has the wrong type (%s)", type_of(v));
	return fail(why, len, at, what);
}

static int check_enum(const json_t *schema, const json_t *v, const char *at, char *why, size_t len)
{
	const json_t *e = json_object_get(schema, "enum"), *one;
	char what[256] = "must be one of", *p = what + strlen(what);
	size_t i;

	if (!e)
		return 0;
	json_array_foreach(e, i, one)
		if (json_equal((json_t *)one, (json_t *)v))
			return 0;
	json_array_foreach(e, i, one)
		if (json_is_string(one) && p < what + sizeof what - 1)
			p += snprintf(p, (size_t)(what + sizeof what - p), "%s \"%s\"", i ? "," : "",
				      json_string_value(one));
	return fail(why, len, at, what);
}

static int check_scalar(const json_t *schema, const json_t *v, const char *at, char *why, size_t len)
{
	const json_t *lim;
	char what[128];

	if (json_is_string(v)) {
		size_t n = json_string_length(v), chars;
		if (strlen(json_string_value(v)) != n)
			return fail(why, len, at, "must not contain NUL (\\u0000); binary data goes base64");
		chars = utf8_chars(json_string_value(v), n);
		if ((lim = json_object_get(schema, "minLength")) && chars < (size_t)json_integer_value(lim)) {
			snprintf(what, sizeof what, "must be at least %lld characters long", json_integer_value(lim));
			return fail(why, len, at, what);
		}
		if ((lim = json_object_get(schema, "maxLength")) && chars > (size_t)json_integer_value(lim)) {
			snprintf(what, sizeof what, "must be at most %lld characters long", json_integer_value(lim));
			return fail(why, len, at, what);
		}
	}
	if (json_is_number(v)) {
		double x = json_number_value(v);
		if ((lim = json_object_get(schema, "minimum")) && x < json_number_value(lim)) {
			snprintf(what, sizeof what, "must be at least %.15g", json_number_value(lim));
			return fail(why, len, at, what);
		}
		if ((lim = json_object_get(schema, "maximum")) && x > json_number_value(lim)) {
			snprintf(what, sizeof what, "must be at most %.15g", json_number_value(lim));
			return fail(why, len, at, what);
		}
	}
	return 0;
}

static int check_array(const json_t *schema, const json_t *v, const char *at, char *why, size_t len)
{
	const json_t *lim, *items = json_object_get(schema, "items"), *one;
	char what[128], sub[256];
	size_t i;

	if ((lim = json_object_get(schema, "minItems")) && json_array_size(v) < (size_t)json_integer_value(lim)) {
		snprintf(what, sizeof what, "must have at least %lld item%s", json_integer_value(lim),
			 json_integer_value(lim) == 1 ? "" : "s");
		return fail(why, len, at, what);
	}
	if ((lim = json_object_get(schema, "maxItems")) && json_array_size(v) > (size_t)json_integer_value(lim)) {
		snprintf(what, sizeof what, "must have at most %lld items", json_integer_value(lim));
		return fail(why, len, at, what);
	}
	json_array_foreach(v, i, one) {
		snprintf(sub, sizeof sub, "%s[%zu]", at, i);
		if (items && mcp_schema_check(items, one, sub, why, len) < 0)
			return -1;
	}
	return 0;
}

static int check_object(const json_t *schema, const json_t *v, const char *at, char *why, size_t len)
{
	const json_t *props = json_object_get(schema, "properties"), *extra = json_object_get(schema,
											  "additionalProperties");
	const json_t *req = json_object_get(schema, "required"), *one, *sub;
	const char *key;
	char path[256], what[160];
	size_t i;

	json_array_foreach(req, i, one) {
		if (!json_object_get(v, json_string_value(one))) {
			snprintf(what, sizeof what, "\"%s\" is required", json_string_value(one));
			return fail(why, len, at, what);
		}
	}
	json_object_foreach((json_t *)v, key, one) {
		/* a key with a NUL would name a field that is not there */
		snprintf(path, sizeof path, "%s%s%.100s", at, *at ? "." : "", key);
		sub = json_object_get(props, key);
		if (!sub && json_is_false(extra)) {
			snprintf(what, sizeof what, "unknown field \"%.100s\"", key);
			return fail(why, len, at, what);
		}
		if (!sub)
			sub = json_is_object(extra) ? extra : NULL;
		if (sub && mcp_schema_check(sub, one, path, why, len) < 0)
			return -1;
	}
	return 0;
}

int mcp_schema_check(const json_t *schema, const json_t *value, const char *at, char *why, size_t len)
{
	if (check_type(schema, value, at, why, len) < 0 || check_enum(schema, value, at, why, len) < 0 ||
	    check_scalar(schema, value, at, why, len) < 0)
		return -1;
	if (json_is_array(value))
		return check_array(schema, value, at, why, len);
	if (json_is_object(value))
		return check_object(schema, value, at, why, len);
	return 0;
}
