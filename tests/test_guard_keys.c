/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Client keys of the server admission guard: from a peer address, from
 * X-Forwarded-For behind trusted proxies, from a named header.  The
 * addresses are real sockaddrs made by libuv, as a server gets them from
 * uv_tcp_getpeername(). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fortify.h"
#include "fortify/guard.h"

TestSuite(guard_keys);

static struct sockaddr_storage v4(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  cr_assert_eq(uv_ip4_addr(ip, 8080, (struct sockaddr_in *)&ss), 0, "%s", ip);
  return ss;
}

static struct sockaddr_storage v6(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  cr_assert_eq(uv_ip6_addr(ip, 8080, (struct sockaddr_in6 *)&ss), 0, "%s", ip);
  return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* The key of |ss| must be |want|, with the length returned. */
static void expect_addr_key(struct sockaddr_storage ss, const char *want) {
  char out[FY_GUARD_KEY_MAX];
  memset(out, 'x', sizeof(out));
  cr_assert_eq(fy_guard_addr_key(SA(ss), out, sizeof(out)), strlen(want));
  cr_assert_str_eq(out, want);
}

/* ---- addresses ----------------------------------------------------------- */

Test(guard_keys, ipv4) {
  expect_addr_key(v4("192.0.2.1"), "192.0.2.1");
  expect_addr_key(v4("127.0.0.1"), "127.0.0.1");
  expect_addr_key(v4("255.255.255.255"), "255.255.255.255");
  expect_addr_key(v4("0.0.0.0"), "0.0.0.0");
}

Test(guard_keys, ipv6_is_compressed_lower_case) {
  expect_addr_key(v6("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
  expect_addr_key(v6("::1"), "::1");
  expect_addr_key(v6("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2:3:4:5:6");
}

Test(guard_keys, ipv6_zone_left_out) {
  struct sockaddr_storage z = v6("fe80::1%lo");
  struct sockaddr_storage plain = v6("fe80::1");
  char a[FY_GUARD_KEY_MAX], b[FY_GUARD_KEY_MAX];

  /* The zone went into sin6_scope_id; the key must not depend on it. */
  cr_assert_neq(((struct sockaddr_in6 *)&z)->sin6_scope_id, 0);
  cr_assert_eq(fy_guard_addr_key(SA(z), a, sizeof(a)), 7);
  cr_assert_eq(fy_guard_addr_key(SA(plain), b, sizeof(b)), 7);
  cr_assert_str_eq(a, "fe80::1");
  cr_assert_str_eq(b, "fe80::1");
  cr_assert_null(strchr(a, '%'));
}

Test(guard_keys, ipv4_mapped_written_as_ipv4) {
  expect_addr_key(v6("::ffff:192.0.2.1"), "192.0.2.1");
  expect_addr_key(v6("::FFFF:c000:0201"), "192.0.2.1");
  /* Only the ::ffff:0:0/96 block is IPv4; these stay IPv6. */
  expect_addr_key(v6("::fffe:c000:201"), "::fffe:c000:201");
  expect_addr_key(v6("64:ff9b::c000:201"), "64:ff9b::c000:201");
}

Test(guard_keys, longest_ipv6_fits_the_documented_size) {
  expect_addr_key(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

Test(guard_keys, addr_buffer_too_small) {
  struct sockaddr_storage a = v4("192.0.2.123"); /* 11 bytes */
  char out[16];

  memset(out, 'x', sizeof(out));
  cr_assert_eq(fy_guard_addr_key(SA(a), out, 11), 0);
  cr_assert_eq(out[0], '\0');
  memset(out, 'x', sizeof(out));
  cr_assert_eq(fy_guard_addr_key(SA(a), out, 12), 11);
  cr_assert_str_eq(out, "192.0.2.123");
  memset(out, 'x', sizeof(out));
  cr_assert_eq(fy_guard_addr_key(SA(a), out, 1), 0);
  cr_assert_eq(out[0], '\0');
  /* Nothing to write into: nothing written. */
  out[0] = 'x';
  cr_assert_eq(fy_guard_addr_key(SA(a), out, 0), 0);
  cr_assert_eq(out[0], 'x');
  cr_assert_eq(fy_guard_addr_key(SA(a), NULL, 16), 0);
}

Test(guard_keys, addr_not_ip) {
  struct sockaddr_storage ss;
  char out[FY_GUARD_KEY_MAX] = "x";

  memset(&ss, 0, sizeof(ss));
  ss.ss_family = AF_UNIX;
  cr_assert_eq(fy_guard_addr_key(SA(ss), out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  ss.ss_family = AF_UNSPEC;
  out[0] = 'x';
  cr_assert_eq(fy_guard_addr_key(SA(ss), out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  out[0] = 'x';
  cr_assert_eq(fy_guard_addr_key(NULL, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
}

/* ---- X-Forwarded-For ----------------------------------------------------- */

/* The trusted proxies, written as fy_guard_addr_key() writes them. */
static const char *const TRUSTED[] = {"10.0.0.1", "10.0.0.2", "2001:db8::9"};

/* The forwarded key for a request from |peer| with |xff|; out is checked
 * to be terminated and its length returned. */
static size_t fwd(struct sockaddr_storage peer, const char *xff, char *out,
                  size_t out_size) {
  size_t n;
  memset(out, 'x', out_size);
  n = fy_guard_forwarded_key(SA(peer), xff, xff ? strlen(xff) : 0, TRUSTED,
                             3, out, out_size);
  cr_assert_eq(strlen(out), n);
  return n;
}

static void expect_fwd(struct sockaddr_storage peer, const char *xff,
                       const char *want) {
  char out[FY_GUARD_KEY_MAX];
  cr_assert_eq(fwd(peer, xff, out, sizeof(out)), strlen(want), "xff '%s'",
               xff ? xff : "(null)");
  cr_assert_str_eq(out, want, "xff '%s'", xff ? xff : "(null)");
}

Test(guard_keys, forwarded_untrusted_peer_ignores_header) {
  /* A client talking to the server directly writes what it likes. */
  expect_fwd(v4("198.51.100.7"), "203.0.113.5", "198.51.100.7");
  expect_fwd(v4("198.51.100.7"), "10.0.0.1", "198.51.100.7");
  expect_fwd(v6("::ffff:198.51.100.7"), "1.2.3.4", "198.51.100.7");
}

Test(guard_keys, forwarded_no_trusted_list_ignores_header) {
  struct sockaddr_storage p = v4("10.0.0.1");
  char out[FY_GUARD_KEY_MAX];
  const char *xff = "203.0.113.5";

  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, strlen(xff), NULL, 3, out,
                                      sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, strlen(xff), TRUSTED, 0,
                                      out, sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
}

Test(guard_keys, forwarded_trusted_peer_one_hop) {
  expect_fwd(v4("10.0.0.1"), "203.0.113.5", "203.0.113.5");
  expect_fwd(v6("::ffff:10.0.0.1"), "203.0.113.5", "203.0.113.5");
  expect_fwd(v6("2001:db8::9"), "203.0.113.5", "203.0.113.5");
}

Test(guard_keys, forwarded_chain_right_most_untrusted) {
  /* a, b, c with b and c trusted proxies: the client is a. */
  expect_fwd(v4("10.0.0.1"), "203.0.113.5, 10.0.0.2, 10.0.0.1",
             "203.0.113.5");
  /* What the client wrote on the left is not believed: the right-most
   * address no trusted proxy owns is the client. */
  expect_fwd(v4("10.0.0.1"), "1.1.1.1, 203.0.113.5, 10.0.0.2",
             "203.0.113.5");
  expect_fwd(v4("10.0.0.2"), "10.0.0.1,203.0.113.9", "203.0.113.9");
}

Test(guard_keys, forwarded_normalises_elements) {
  expect_fwd(v4("10.0.0.1"), "2001:DB8:0::1", "2001:db8::1");
  expect_fwd(v4("10.0.0.1"), "::ffff:203.0.113.5", "203.0.113.5");
  expect_fwd(v4("10.0.0.1"), "fe80::1%eth0", "fe80::1");
  /* A trusted proxy written another way is still that proxy. */
  expect_fwd(v4("10.0.0.1"), "203.0.113.5, ::ffff:10.0.0.2", "203.0.113.5");
}

Test(guard_keys, forwarded_spaces_and_empty_elements) {
  expect_fwd(v4("10.0.0.1"), " \t203.0.113.5 \t", "203.0.113.5");
  expect_fwd(v4("10.0.0.1"), "203.0.113.5 , , 10.0.0.2 ,", "203.0.113.5");
  expect_fwd(v4("10.0.0.1"), ",,,203.0.113.5", "203.0.113.5");
}

Test(guard_keys, forwarded_empty_header_is_peer) {
  expect_fwd(v4("10.0.0.1"), "", "10.0.0.1");
  expect_fwd(v4("10.0.0.1"), NULL, "10.0.0.1");
  expect_fwd(v4("10.0.0.1"), "  ,\t, ", "10.0.0.1");
}

Test(guard_keys, forwarded_all_trusted_is_peer) {
  expect_fwd(v4("10.0.0.1"), "10.0.0.2, 10.0.0.1", "10.0.0.1");
}

Test(guard_keys, forwarded_garbage_is_peer) {
  static const char *const bad[] = {
      "unknown",          "203.0.113",        "203.0.113.5.6",
      "203.0.113.256",    "203.0.113.05",     "1.2.3.4:80",
      "[2001:db8::1]",    "2001:db8:::1",     "example.com",
      "203.0.113.5 junk", "-1.2.3.4",         "203.0.113.5\r\n",
      "\x01\x02",         "\xff\xfe\xfd",     "10.0.0.2 10.0.0.3"};
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_fwd(v4("10.0.0.1"), bad[i], "10.0.0.1");
  /* Garbage where the trusted chain leads: the chain cannot be followed. */
  expect_fwd(v4("10.0.0.1"), "203.0.113.5, junk, 10.0.0.2", "10.0.0.1");
  /* Garbage the client put further left is never read. */
  expect_fwd(v4("10.0.0.1"), "junk, \x01, 203.0.113.5", "203.0.113.5");
}

Test(guard_keys, forwarded_embedded_nul) {
  struct sockaddr_storage p = v4("10.0.0.1");
  char out[FY_GUARD_KEY_MAX];
  static const char xff[] = "203.0.113.5\0junk";
  static const char xff2[] = "1.2.3.4,\0, 203.0.113.5";

  /* Read as a C string this would be a valid address. */
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, sizeof(xff) - 1, TRUSTED, 3,
                                      out, sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
  /* A NUL to the left of the client's address is not reached. */
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff2, sizeof(xff2) - 1, TRUSTED,
                                      3, out, sizeof(out)), 11);
  cr_assert_str_eq(out, "203.0.113.5");
}

Test(guard_keys, forwarded_element_limit) {
  char xff[64 * 12];
  size_t i;

  /* 31 trusted hops, then the client: found. */
  strcpy(xff, "203.0.113.5");
  for (i = 0; i < 31; i++)
    strcat(xff, ", 10.0.0.2");
  expect_fwd(v4("10.0.0.1"), xff, "203.0.113.5");
  /* 32 trusted hops: the search stops there, whatever follows. */
  strcpy(xff, "203.0.113.5");
  for (i = 0; i < 32; i++)
    strcat(xff, ", 10.0.0.2");
  expect_fwd(v4("10.0.0.1"), xff, "10.0.0.1");
  /* Empty elements count: padding cannot buy unbounded work. */
  strcpy(xff, "203.0.113.5");
  for (i = 0; i < 40; i++)
    strcat(xff, ",");
  expect_fwd(v4("10.0.0.1"), xff, "10.0.0.1");
}

Test(guard_keys, forwarded_huge_header_reads_only_the_end) {
  size_t n = 1u << 20;
  char *xff = malloc(n + 32);
  char out[FY_GUARD_KEY_MAX];
  struct sockaddr_storage p = v4("10.0.0.1");
  size_t len;

  cr_assert_not_null(xff);
  /* A megabyte of client padding, then what the proxy appended. */
  memset(xff, 'A', n);
  strcpy(xff + n, ",203.0.113.5");
  len = strlen(xff);
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, len, TRUSTED, 3, out,
                                      sizeof(out)), 11);
  cr_assert_str_eq(out, "203.0.113.5");
  /* One element that long is no address. */
  strcpy(xff + n, ",10.0.0.2");
  len = strlen(xff);
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, len, TRUSTED, 3, out,
                                      sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
  /* A long run of spaces before a valid address is past the scan bound. */
  memset(xff, ' ', 200);
  strcpy(xff + 200, "203.0.113.5");
  len = strlen(xff);
  cr_assert_eq(fy_guard_forwarded_key(SA(p), xff, len, TRUSTED, 3, out,
                                      sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
  free(xff);
}

Test(guard_keys, forwarded_buffer_too_small) {
  char out[16];

  /* The client's key does not fit: 0, terminated. */
  cr_assert_eq(fwd(v4("10.0.0.1"), "203.0.113.5", out, 11), 0);
  cr_assert_eq(out[0], '\0');
  cr_assert_eq(fwd(v4("10.0.0.1"), "203.0.113.5", out, 12), 11);
  cr_assert_str_eq(out, "203.0.113.5");
  /* The peer's key as the fallback does not fit either. */
  cr_assert_eq(fwd(v4("10.0.0.1"), "junk", out, 8), 0);
  cr_assert_eq(out[0], '\0');
}

Test(guard_keys, forwarded_bad_peer) {
  char out[FY_GUARD_KEY_MAX] = "x";
  struct sockaddr_storage ss;

  cr_assert_eq(fy_guard_forwarded_key(NULL, "1.2.3.4", 7, TRUSTED, 3, out,
                                      sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = AF_UNIX;
  out[0] = 'x';
  cr_assert_eq(fy_guard_forwarded_key(SA(ss), "1.2.3.4", 7, TRUSTED, 3, out,
                                      sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
}

Test(guard_keys, forwarded_trusted_list_exact_match) {
  static const char *const t[] = {NULL, "10.0.0.1"};
  struct sockaddr_storage p = v4("10.0.0.10");
  char out[FY_GUARD_KEY_MAX];

  /* 10.0.0.10 starts like 10.0.0.1 but is not it. */
  cr_assert_eq(fy_guard_forwarded_key(SA(p), "203.0.113.5", 11, t, 2, out,
                                      sizeof(out)), 9);
  cr_assert_str_eq(out, "10.0.0.10");
  p = v4("10.0.0.1");
  cr_assert_eq(fy_guard_forwarded_key(SA(p), "203.0.113.5", 11, t, 2, out,
                                      sizeof(out)), 11);
  cr_assert_str_eq(out, "203.0.113.5");
}

Test(guard_keys, forwarded_trusted_prefix_is_not_trusted) {
  static const char *const t[] = {"10.0.0.10"};
  struct sockaddr_storage p = v4("10.0.0.1");
  char out[FY_GUARD_KEY_MAX];

  /* 10.0.0.1 is the beginning of the trusted 10.0.0.10, not it. */
  cr_assert_eq(fy_guard_forwarded_key(SA(p), "203.0.113.5", 11, t, 1, out,
                                      sizeof(out)), 8);
  cr_assert_str_eq(out, "10.0.0.1");
}

/* ---- header names -------------------------------------------------------- */

Test(guard_keys, header_names) {
  char name[80];

  cr_assert_eq(fy_guard_header_name_valid("X-Api-Key"), 1);
  cr_assert_eq(fy_guard_header_name_valid("x"), 1);
  cr_assert_eq(fy_guard_header_name_valid("A1!#$%&'*+-.^_`|~z"), 1);
  cr_assert_eq(fy_guard_header_name_valid(""), 0);
  cr_assert_eq(fy_guard_header_name_valid(NULL), 0);
  cr_assert_eq(fy_guard_header_name_valid("X Api"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X-Api:"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X-Api\t"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X(Api)"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X\"Api"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X-Api\r\nEvil: 1"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X-\xc3\xa9"), 0);
  cr_assert_eq(fy_guard_header_name_valid("X\x7f"), 0);
  memset(name, 'a', sizeof(name));
  name[64] = '\0';
  cr_assert_eq(fy_guard_header_name_valid(name), 1);
  name[64] = 'a';
  name[65] = '\0';
  cr_assert_eq(fy_guard_header_name_valid(name), 0);
}

/* ---- header values ------------------------------------------------------- */

static size_t hkey(const char *v, size_t len, char *out, size_t out_size) {
  size_t n;
  memset(out, 'x', out_size);
  n = fy_guard_header_key(v, len, out, out_size);
  if (out_size > 0)
    cr_assert_eq(strlen(out), n);
  return n;
}

Test(guard_keys, header_value_trimmed) {
  char out[32];

  cr_assert_eq(hkey("tenant-1", 8, out, sizeof(out)), 8);
  cr_assert_str_eq(out, "tenant-1");
  cr_assert_eq(hkey(" \t tenant 1\t ", 13, out, sizeof(out)), 8);
  cr_assert_str_eq(out, "tenant 1");
  /* Bytes above ASCII are kept as they are (the limiter sanitises keys
   * before showing them). */
  cr_assert_eq(hkey("caf\xc3\xa9", 5, out, sizeof(out)), 5);
  cr_assert_str_eq(out, "caf\xc3\xa9");
  /* |len| counts, not the terminator. */
  cr_assert_eq(hkey("abcdef", 3, out, sizeof(out)), 3);
  cr_assert_str_eq(out, "abc");
}

Test(guard_keys, header_value_empty) {
  char out[32];

  cr_assert_eq(hkey("", 0, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  cr_assert_eq(hkey(" \t \t", 4, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  cr_assert_eq(hkey(NULL, 5, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
}

Test(guard_keys, header_value_control_bytes) {
  char out[32];

  cr_assert_eq(hkey("ab\0cd", 5, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  cr_assert_eq(hkey("ab\tcd", 5, out, sizeof(out)), 0);
  cr_assert_eq(hkey("ab\r\nX-Evil: 1", 14, out, sizeof(out)), 0);
  cr_assert_eq(hkey("ab\x7f", 3, out, sizeof(out)), 0);
  cr_assert_eq(hkey("\x1b[31mred", 8, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
}

Test(guard_keys, header_value_too_long_is_not_cut) {
  char out[8];

  cr_assert_eq(hkey("1234567", 7, out, sizeof(out)), 7);
  cr_assert_str_eq(out, "1234567");
  cr_assert_eq(hkey("12345678", 8, out, sizeof(out)), 0);
  cr_assert_eq(out[0], '\0');
  /* Spaces around do not count against the size. */
  cr_assert_eq(hkey("  1234567  ", 11, out, sizeof(out)), 7);
  cr_assert_str_eq(out, "1234567");
  cr_assert_eq(hkey("1", 1, out, 1), 0);
  cr_assert_eq(out[0], '\0');
  out[0] = 'x';
  cr_assert_eq(fy_guard_header_key("1", 1, out, 0), 0);
  cr_assert_eq(out[0], 'x');
  cr_assert_eq(fy_guard_header_key("1", 1, NULL, 8), 0);
  cr_assert_eq(fy_guard_header_key("1", SIZE_MAX, NULL, 0), 0);
}
