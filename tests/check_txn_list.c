/*
 * The transaction lists the router keeps in deadline order (router.c):
 * a new publish at the tail, a retry inserted by its deadline behind those
 * with the same one, and a refused batch's PUBs put back in front, ahead of
 * what came since with the same deadline but behind an earlier retry.
 * publish_timeout looks only at a list's head, so a list out of order lets
 * a publish time out late.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define MAXT 16

/* Transactions named by their index: a test builds them, then reads a
 * list back as the indexes in order. */
static nsq__txn_t *g_txn[MAXT];

static nsq__txn_t *txn(int i, int64_t deadline)
{
    ck_assert_int_lt(i, MAXT);
    nsq__txn_t *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->deadline_ms = deadline;
    g_txn[i] = t;
    return t;
}

static void free_all(void)
{
    for (int i = 0; i < MAXT; i++) {
        free(g_txn[i]);
        g_txn[i] = NULL;
    }
}

static int index_of(const nsq__txn_t *t)
{
    for (int i = 0; i < MAXT; i++)
        if (g_txn[i] == t)
            return i;
    return -1;
}

/* "0 3 1": the indexes in l, head first; also checks count and tail. */
static void expect_order(const nsq__txn_list_t *l, const char *want)
{
    char got[128] = "";
    size_t len = 0, n = 0;
    const nsq__txn_t *last = NULL;
    for (const nsq__txn_t *t = l->head; t; t = t->next) {
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%d",
                                n ? " " : "", index_of(t));
        last = t;
        n++;
    }
    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(l->count, n);
    ck_assert_ptr_eq(l->tail, last);
}

/* A chain of transactions linked by next, as a batch's members are. */
static nsq__txn_t *chain(nsq__txn_t *a, nsq__txn_t *b, nsq__txn_t *c)
{
    a->next = b;
    if (b)
        b->next = c;
    if (c)
        c->next = NULL;
    return a;
}

START_TEST(insert_by_deadline)
{
    nsq__txn_list_t l = {0};
    nsq__list_insert(&l, txn(0, 10));
    nsq__list_insert(&l, txn(1, 30));
    expect_order(&l, "0 1");
    /* A retry goes by its deadline, behind one with the same. */
    nsq__list_insert(&l, txn(2, 10));
    expect_order(&l, "0 2 1");
    nsq__list_insert(&l, txn(3, 5));
    expect_order(&l, "3 0 2 1");
    /* The latest goes at the tail. */
    nsq__list_insert(&l, txn(4, 30));
    expect_order(&l, "3 0 2 1 4");
    ck_assert_ptr_eq(nsq__list_pop(&l), g_txn[3]);
    expect_order(&l, "0 2 1 4");
    free_all();
}
END_TEST

START_TEST(put_back_into_empty)
{
    nsq__txn_list_t l = {0};
    nsq__list_put_back(&l, NULL);
    expect_order(&l, "");
    nsq__list_put_back(&l, chain(txn(0, 10), txn(1, 10), txn(2, 20)));
    expect_order(&l, "0 1 2");
    /* What comes next still goes at the tail. */
    nsq__list_insert(&l, txn(3, 20));
    expect_order(&l, "0 1 2 3");
    free_all();
}
END_TEST

/* The batch's PUBs were taken first: they go ahead of what came since
 * with the same deadline, in their own order. */
START_TEST(put_back_ahead_of_same_deadline)
{
    nsq__txn_list_t l = {0};
    nsq__list_insert(&l, txn(0, 10));
    nsq__list_insert(&l, txn(1, 20));
    nsq__list_put_back(&l, chain(txn(2, 10), txn(3, 10), NULL));
    expect_order(&l, "2 3 0 1");
    free_all();
}
END_TEST

/* A retry with an earlier deadline came while the batch was in flight:
 * it stays in front, so publish_timeout still finds it at the head. */
START_TEST(put_back_behind_earlier_retry)
{
    nsq__txn_list_t l = {0};
    nsq__list_insert(&l, txn(0, 30));
    nsq__list_insert(&l, txn(1, 5)); /* the retry */
    expect_order(&l, "1 0");
    nsq__list_put_back(&l, chain(txn(2, 10), txn(3, 20), NULL));
    expect_order(&l, "1 2 3 0");
    free_all();
}
END_TEST

/* Deadlines between the list's, and past its tail. */
START_TEST(put_back_interleaved_and_past_tail)
{
    nsq__txn_list_t l = {0};
    nsq__list_insert(&l, txn(0, 10));
    nsq__list_insert(&l, txn(1, 20));
    nsq__list_insert(&l, txn(2, 30));
    nsq__list_put_back(&l, chain(txn(3, 15), txn(4, 25), txn(5, 40)));
    expect_order(&l, "0 3 1 4 2 5");
    nsq__list_insert(&l, txn(6, 50));
    expect_order(&l, "0 3 1 4 2 5 6");
    free_all();
}
END_TEST

static Suite *txn_list_suite(void)
{
    Suite *s = suite_create("txn_list");
    TCase *tc = tcase_create("lists");
    tcase_add_test(tc, insert_by_deadline);
    tcase_add_test(tc, put_back_into_empty);
    tcase_add_test(tc, put_back_ahead_of_same_deadline);
    tcase_add_test(tc, put_back_behind_earlier_retry);
    tcase_add_test(tc, put_back_interleaved_and_past_tail);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(txn_list_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
