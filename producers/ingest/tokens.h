/* keng-ingest's bearer tokens: a file that never stores a token, only the SHA-256 of each, with
 * the gateway it belongs to and the units that gateway may report for. One line per token:
 *
 *   <sha256 of the token, 64 hex digits> <gateway name> <units>
 *
 * where units is a comma-separated list of unit ids of any level of the registry (districts
 * D01,D07; communes, such as the two-tier province's 16681; single boards) or "*" for all,
 * and '#' starts a comment. A file that holds no token on purpose has the line "!no-tokens". */
#ifndef KENG_TOKENS_H
#define KENG_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "registry.h"

typedef struct keng_tokens keng_tokens_t;
typedef struct keng_gateway keng_gateway_t;

/* Bytes of randomness in a new token, and the length of its base64url text (no padding). */
#define KENG_TOKEN_RANDOM_BYTES 32
#define KENG_TOKEN_TEXT_LEN     43
#define KENG_TOKEN_HASH_HEX_LEN 64
#define KENG_GATEWAY_NAME_MAX   64

/* Loads a token file. Returns NULL with errstr naming the line and what is wrong with it
 * ("tokens.txt:3: the hash must be 64 hex digits"). The caller owns the result. */
keng_tokens_t *keng_tokens_load(const char *path, char *errstr, size_t errstr_size);

/* A set with no tokens: every request is refused. NULL when memory runs out; the caller owns
 * the result (keng_tokens_destroy). */
keng_tokens_t *keng_tokens_empty(void);

void keng_tokens_destroy(keng_tokens_t *tokens);

size_t keng_tokens_count(const keng_tokens_t *tokens);

/* Whether the file said, with the line "!no-tokens", that it holds no token on purpose (no
 * gateway may post). A file with no token and no such line is more likely emptied by
 * accident; keng-ingest refuses to reload it. */
bool keng_tokens_none_intended(const keng_tokens_t *tokens);

/* The gateway whose token is token[0..len), or NULL. The token's hash is compared with every
 * entry in constant time, whether or not an earlier one matched, so the time taken says
 * nothing about which hashes are stored. Borrowed from tokens. */
const keng_gateway_t *keng_tokens_find(const keng_tokens_t *tokens, const char *token, size_t len);

/* The same for an Authorization header value ("Bearer <token>", the scheme in any case).
 * NULL for a missing header, another scheme or an unknown token. Borrowed from tokens. */
const keng_gateway_t *keng_tokens_authorize(const keng_tokens_t *tokens, const char *header);

/* Borrowed from gw, so valid as long as its token set. */
const char *keng_gateway_name(const keng_gateway_t *gw);

/* Whether the gateway's list names the unit (id not necessarily NUL-terminated). */
bool keng_gateway_allows(const keng_gateway_t *gw, const char *unit_id, size_t len);

/* Whether the gateway may report for the board at index: its list names the board, its
 * commune or its district (when the registry has districts). */
bool keng_gateway_allows_board(const keng_gateway_t *gw, const keng_registry_t *reg,
                               uint32_t board);

/* Checks a units word ("D01,D07", "*") against the registry: every id must be a unit of some
 * level. Returns 0, or -1 with errstr naming the first unknown id. */
int keng_tokens_check_units(const char *units, const keng_registry_t *reg, char *errstr,
                            size_t errstr_size);

/* Calls fn for each unit of a token's list that the registry does not have (a unit that a
 * new registry removed, or a mistyped one), with the gateway's name. Returns how many. */
size_t keng_tokens_each_unknown_unit(const keng_tokens_t *tokens, const keng_registry_t *reg,
                                     void (*fn)(const char *gateway, const char *unit, void *arg),
                                     void *arg);

/* Makes a new random token (KENG_TOKEN_RANDOM_BYTES from the system's CSPRNG, base64url):
 * writes its text to token (at least KENG_TOKEN_TEXT_LEN + 1 bytes) and the hex of its
 * SHA-256 to hash_hex (at least KENG_TOKEN_HASH_HEX_LEN + 1 bytes). Returns 0, or -1 with
 * errstr filled. */
int keng_tokens_generate(char *token, char *hash_hex, char *errstr, size_t errstr_size);

/* Appends the line for a token's hash to the token file (created with mode 0600 when
 * missing), after checking that name and districts would load back, with the time as a
 * comment ("# created 2026-12-06T08:00:00Z", which --list-tokens shows). Refuses a file that
 * says "!no-tokens". Returns 0, or -1 with errstr filled. */
int keng_tokens_append(const char *path, const char *hash_hex, const char *name,
                       const char *districts, char *errstr, size_t errstr_size);

/* Writes one line per token of the file to out: its id (the first 8 hex digits of its hash,
 * enough to tell two tokens of one gateway apart, never the token), the gateway, the
 * districts and the creation time ("-" when the line has none), two spaces apart. Returns 0,
 * or -1 with errstr filled (a file that does not load: nothing is written). */
int keng_tokens_list(const char *path, FILE *out, char *errstr, size_t errstr_size);

/* Removes the token which names from the file: "NAME" when the gateway has one token,
 * "NAME@ID" (an id of keng_tokens_list) to choose one of several. The file is replaced whole
 * (a new file with the same mode, synced, then renamed over it). Removing the last token
 * writes "!no-tokens" instead, so that the reload takes the file. what gets "gw-b@6b5a7fd4
 * (D02)". Returns 0, or -1 with errstr saying why, the file unchanged. */
int keng_tokens_revoke(const char *path, const char *which, char *what, size_t what_size,
                       char *errstr, size_t errstr_size);

#endif
