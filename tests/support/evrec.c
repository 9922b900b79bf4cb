/* Copyright (c) 2026 the fortify authors. MIT licensed. */
#include "evrec.h"

#include <criterion/criterion.h>
#include <string.h>

void evrec_cb(fy_ctx_t *ctx, const fy_event_t *ev, void *user_data) {
  evrec_t *rec = user_data;
  unsigned i = rec->n;
  (void)ctx;
  cr_assert_lt(i, EVREC_MAX, "more than %d events", EVREC_MAX);
  rec->ev[i] = *ev;
  rec->kind[i][0] = '\0';
  rec->name[i][0] = '\0';
  if (ev->policy_kind != NULL) {
    strncpy(rec->kind[i], ev->policy_kind, sizeof(rec->kind[i]) - 1);
    rec->ev[i].policy_kind = rec->kind[i];
  }
  if (ev->policy_name != NULL) {
    strncpy(rec->name[i], ev->policy_name, sizeof(rec->name[i]) - 1);
    rec->ev[i].policy_name = rec->name[i];
  }
  if (ev->key != NULL) {
    cr_assert_lt(strlen(ev->key), sizeof(rec->key[i]), "key too long");
    strcpy(rec->key[i], ev->key);
    rec->ev[i].key = rec->key[i];
  }
  rec->n++;
  if (rec->hook != NULL)
    rec->hook(rec, ev);
}

void evrec_listen(evrec_t *rec, fy_ctx_t *ctx, uint32_t mask) {
  memset(rec, 0, sizeof(*rec));
  cr_assert_eq(fy_ctx_listen(ctx, mask, evrec_cb, rec, &rec->listener), 0);
  cr_assert_not_null(rec->listener);
}

unsigned evrec_count(const evrec_t *rec, fy_event_type_t type) {
  unsigned i, n = 0;
  for (i = 0; i < rec->n; i++)
    n += rec->ev[i].type == type;
  return n;
}

const fy_event_t *evrec_nth(const evrec_t *rec, fy_event_type_t type,
                            unsigned k) {
  unsigned i;
  for (i = 0; i < rec->n; i++)
    if (rec->ev[i].type == type && k-- == 0)
      return &rec->ev[i];
  return NULL;
}
