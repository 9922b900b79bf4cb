/* Copyright (c) 2026 the fortify authors. MIT licensed.
 *
 * Client keys for the server admission guard: the key of a client from
 * its address, from X-Forwarded-For behind trusted proxies, or from a
 * named request header.
 *
 * Everything here reads input a client wrote, so every function takes
 * any bytes (NULL, embedded NULs, huge lengths) and does a bounded amount
 * of work.  Nothing allocates.  On failure |out| is left holding the
 * empty string whenever it has room for one, so a caller that ignores
 * the return value still never reads an unterminated key. */
#include <string.h>

#include "fortify.h"
#include "fortify/guard.h"

/* X-Forwarded-For is read from its right end, where the trusted proxies
 * appended what they saw; the left part is whatever the client sent and
 * is never looked at unless the chain of trusted proxies leads there.
 * So the work is bounded by these two figures, not by the header's
 * length: at most XFF_ELEMENTS elements, each at most XFF_ELEMENT_SCAN
 * bytes including the spaces around it.  A longer element cannot be an
 * address (the longest textual IPv6 address with a zone that
 * uv_inet_pton takes is well under it). */
#define XFF_ELEMENTS 32
#define XFF_ELEMENT_SCAN 128
/* The longest address text copied for uv_inet_pton, zone included. */
#define ADDR_TEXT_MAX 63

static void out_clear(char *out, size_t out_size) {
  if (out != NULL && out_size > 0)
    out[0] = '\0';
}

/* Copies |len| bytes and a terminator when they fit; else clears |out|
 * and returns 0. */
static size_t out_put(const char *s, size_t len, char *out, size_t out_size) {
  if (out == NULL || out_size == 0)
    return 0;
  if (len == 0 || len > out_size - 1) {
    out[0] = '\0';
    return 0;
  }
  memcpy(out, s, len);
  out[len] = '\0';
  return len;
}

/* The key of an address given as raw bytes: IPv4 (4 bytes) or IPv6 (16),
 * an IPv4-mapped IPv6 address written as the IPv4 address it maps. */
static size_t bytes_key(int family, const unsigned char *bytes, char *out,
                        size_t out_size) {
  static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0,
                                              0, 0, 0, 0, 0xff, 0xff};
  char text[FY_GUARD_KEY_MAX];

  if (family == AF_INET6 && memcmp(bytes, v4_mapped, 12) == 0) {
    family = AF_INET;
    bytes += 12;
  }
  if (uv_inet_ntop(family, bytes, text, sizeof(text)) != 0)
    return out_put(NULL, 0, out, out_size);
  /* uv_inet_ntop writes only the address: an IPv6 zone lives in
   * sin6_scope_id, which is not passed, so it never reaches the key. */
  return out_put(text, strlen(text), out, out_size);
}

size_t fy_guard_addr_key(const struct sockaddr *addr, char *out,
                         size_t out_size) {
  if (addr == NULL)
    return out_put(NULL, 0, out, out_size);
  if (addr->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

    return bytes_key(AF_INET, (const unsigned char *)&sin->sin_addr, out,
                     out_size);
  }
  if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

    return bytes_key(AF_INET6, (const unsigned char *)&sin6->sin6_addr, out,
                     out_size);
  }
  return out_put(NULL, 0, out, out_size);
}

/* 1 when |key| is one of the trusted addresses.  They are compared as
 * text, so the server writes them as fy_guard_addr_key() would (a server
 * normalises its configuration once, at startup). */
static int is_trusted(const char *key, size_t klen, const char *const *trusted,
                      size_t ntrusted) {
  size_t i;

  for (i = 0; i < ntrusted; i++) {
    /* klen + 1 bytes: the terminator must match too, so "10.0.0.1" does
     * not trust "10.0.0.10". */
    if (trusted[i] != NULL && strncmp(trusted[i], key, klen + 1) == 0)
      return 1;
  }
  return 0;
}

static int is_ows(char ch) {
  return ch == ' ' || ch == '\t';
}

/* Parses one X-Forwarded-For element (|s|, |n| bytes, spaces already
 * trimmed) into its key.  Returns the key's length, or 0 when it is not
 * a numeric IPv4 or IPv6 address. */
static size_t element_key(const char *s, size_t n, char *key, size_t key_size) {
  char text[ADDR_TEXT_MAX + 1];
  unsigned char bytes[16];
  size_t i;

  if (n == 0 || n > ADDR_TEXT_MAX)
    return 0;
  /* Only printable ASCII, no space: uv_inet_pton reads a C string, so a
   * NUL inside the element would otherwise end it early and let
   * "192.0.2.1<NUL>junk" pass as an address. */
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];

    if (ch <= 0x20 || ch >= 0x7f)
      return 0;
  }
  memcpy(text, s, n);
  text[n] = '\0';
  if (uv_inet_pton(AF_INET, text, bytes) == 0)
    return bytes_key(AF_INET, bytes, key, key_size);
  /* uv_inet_pton takes an IPv6 zone ("fe80::1%eth0") and leaves it out,
   * as the key must. */
  if (uv_inet_pton(AF_INET6, text, bytes) == 0)
    return bytes_key(AF_INET6, bytes, key, key_size);
  return 0;
}

size_t fy_guard_forwarded_key(const struct sockaddr *peer, const char *xff,
                              size_t len, const char *const *trusted,
                              size_t ntrusted, char *out, size_t out_size) {
  char peer_key[FY_GUARD_KEY_MAX];
  char key[FY_GUARD_KEY_MAX];
  size_t peer_len;
  size_t end = len; /* the element being read ends here */
  int elements;

  out_clear(out, out_size);
  peer_len = fy_guard_addr_key(peer, peer_key, sizeof(peer_key));
  if (peer_len == 0)
    return 0;
  /* With no trusted proxy, or a peer that is not one, the header was
   * written by the client itself and says nothing. */
  if (xff == NULL || len == 0 || trusted == NULL || ntrusted == 0 ||
      !is_trusted(peer_key, peer_len, trusted, ntrusted))
    return out_put(peer_key, peer_len, out, out_size);

  for (elements = 0; elements < XFF_ELEMENTS; elements++) {
    size_t start = end;
    size_t scanned = 0;
    size_t a, b;
    size_t klen;

    /* Find the comma before this element, within the scan bound. */
    while (start > 0 && xff[start - 1] != ',') {
      if (++scanned > XFF_ELEMENT_SCAN)
        return out_put(peer_key, peer_len, out, out_size);
      start--;
    }
    a = start;
    b = end;
    while (a < b && is_ows(xff[a]))
      a++;
    while (b > a && is_ows(xff[b - 1]))
      b--;
    /* An empty element ("a, , b") is allowed by HTTP's list syntax and
     * names nobody: skip it. */
    if (a < b) {
      klen = element_key(xff + a, b - a, key, sizeof(key));
      if (klen == 0) /* not an address: the chain cannot be followed */
        return out_put(peer_key, peer_len, out, out_size);
      if (!is_trusted(key, klen, trusted, ntrusted))
        return out_put(key, klen, out, out_size);
    }
    if (start == 0) /* every address was a trusted proxy's */
      break;
    end = start - 1; /* before the comma */
  }
  /* The list ended, or it is longer than any real chain of proxies:
   * nothing in it names the client, so the peer stands for it. */
  return out_put(peer_key, peer_len, out, out_size);
}

/* An HTTP token character (RFC 9110, section 5.6.2). */
static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
      (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int fy_guard_header_name_valid(const char *name) {
  size_t i;

  if (name == NULL)
    return 0;
  /* Stops at the 65th byte: a name that long is refused without reading
   * the rest of it. */
  for (i = 0; name[i] != '\0'; i++) {
    if (i >= 64 || !is_tchar((unsigned char)name[i]))
      return 0;
  }
  return i > 0;
}

size_t fy_guard_header_key(const char *value, size_t len, char *out,
                           size_t out_size) {
  size_t a = 0;
  size_t b = len;
  size_t i;

  out_clear(out, out_size);
  if (value == NULL || out == NULL || out_size == 0)
    return 0;
  while (a < b && is_ows(value[a]))
    a++;
  while (b > a && is_ows(value[b - 1]))
    b--;
  /* Never cut: two clients whose keys differ only past the cut would
   * share one bucket. */
  if (b - a > out_size - 1)
    return 0;
  for (i = a; i < b; i++) {
    unsigned char ch = (unsigned char)value[i];

    /* A control byte (NUL and tab included) has no place in a key that
     * may end up in a log line. */
    if (ch < 0x20 || ch == 0x7f)
      return 0;
  }
  return out_put(value + a, b - a, out, out_size);
}
