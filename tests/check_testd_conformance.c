/*
 * The test broker against real nsqd: every conformance vector is replayed
 * over TCP against an in-process nsqpub-testd configured like the nsqd of
 * the capture, and its answers must match byte for byte (outside the ranges
 * the vector marks variable), closing the connection at the same step.
 *
 * The TLS and compression cases need the stream transforms of the TLS and
 * compression work; until the broker has them they are reported as skipped
 * (printed, and counted by the skipped_cases test) rather than passed.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nettest.h"
#include "nsq/testd.h"
#include "vectors.h"

static char **g_paths;
static int g_npaths;

/* Waits up to ms for frames, appending whole frames' bytes to got; returns
 * false when the peer closed (or reset). */
static bool read_frames(int fd, nsq_frame_reader_t *r, size_t want,
                        size_t *have, nsq_frame_t *frames, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    while (*have < want || want == (size_t)-1) {
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return true;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)left);
        if (n <= 0)
            continue;
        char buf[65536];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0)
            return false;
        ck_assert_int_eq(nsq_frame_reader_feed(r, buf, (size_t)got), NSQ_OK);
        nsq_frame_t f;
        int rc;
        while ((rc = nsq_frame_reader_next(r, &f)) == 1) {
            ck_assert_uint_lt(*have, 16);
            /* Keep a copy: the view dies with the next reader call. */
            char *copy = malloc(f.len + 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, f.data, f.len);
            frames[*have] = (nsq_frame_t){f.type, copy, f.len};
            (*have)++;
        }
        ck_assert_int_eq(rc, 0);
    }
    return true;
}

/* True if the peer closes within ms (EOF or reset), reading past frames. */
static bool closes_within(int fd, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return true;
    }
}

static void free_frames(nsq_frame_t *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)frames[i].data);
}

/* Publishes the side connection's bytes and waits for its answer. */
static void side_publish(uint16_t port, const vec_step_t *st)
{
    int fd = tt_connect(port);
    ck_assert_int_ge(fd, 0);
    tt_send_all(fd, st->side_send.data, st->side_send.len);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    nsq_frame_t frames[16];
    size_t have = 0;
    read_frames(fd, r, st->side_nframes, &have, frames, 5000);
    ck_assert_uint_eq(have, st->side_nframes);
    for (size_t i = 0; i < have; i++)
        ck_assert_int_eq(frames[i].type, NSQ_FRAME_RESPONSE);
    free_frames(frames, have);
    nsq_frame_reader_destroy(r);
    close(fd);
}

static bool needs_transforms(const vec_case_t *c)
{
    if (c->tls_enabled)
        return true;
    /* Answering an IDENTIFY that asks for compression depends on the
     * broker having it enabled (E_IDENTIFY_FAILED when both are asked). */
    for (size_t i = 0; i < c->nsteps; i++)
        if (memmem(c->steps[i].send.data, c->steps[i].send.len,
                   "\"snappy\":true", 13) ||
            memmem(c->steps[i].send.data, c->steps[i].send.len,
                   "\"deflate\":true", 14))
            return true;
    for (size_t i = 0; i < c->nsteps; i++)
        if (c->steps[i].recv_encoding[0] || c->steps[i].compressed_send)
            return true;
    return false;
}

static void replay(const vec_case_t *c)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    if (c->auth_enabled) {
        opts.auth_secret = "s3cret";
        opts.auth_identity = "bench";
    }
    char err[256];
    nsq_testd_t *t = nsq_testd_start(&opts, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    int fd = tt_connect(nsq_testd_port(t));
    ck_assert_int_ge(fd, 0);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);

    /* Frames received per step, kept for send_substitutions. */
    nsq_frame_t got[32][16];
    size_t ngot[32] = {0};
    ck_assert_uint_le(c->nsteps, 32);
    for (size_t s = 0; s < c->nsteps; s++) {
        const vec_step_t *st = &c->steps[s];
        if (st->side_publish)
            side_publish(nsq_testd_port(t), st);
        unsigned char *send = malloc(st->send.len + 1);
        ck_assert_ptr_nonnull(send);
        if (st->send.len)
            memcpy(send, st->send.data, st->send.len);
        for (size_t k = 0; k < st->nsubst; k++) {
            size_t from = st->subst[k].from_step, fr = st->subst[k].from_frame;
            ck_assert_uint_lt(from, s);
            ck_assert_uint_lt(fr, ngot[from]);
            size_t n = st->subst[k].dst_end - st->subst[k].dst_start;
            ck_assert_uint_le(st->subst[k].src_start + n, got[from][fr].len);
            memcpy(send + st->subst[k].dst_start,
                   got[from][fr].data + st->subst[k].src_start, n);
        }
        /* nsqd may close while a large send is still going: then the
         * write fails, as it did in the capture. */
        bool sent = tt_send_all(fd, send, st->send.len);
        ck_assert_msg(sent || st->server_closed, "%s step %zu: send failed",
                      c->name, s);
        free(send);
        bool open = read_frames(fd, r, st->nframes, &ngot[s], got[s],
                                st->nframes ? 5000 : 150);
        ck_assert_msg(ngot[s] == st->nframes, "%s step %zu: %zu of %zu frames",
                      c->name, s, ngot[s], st->nframes);
        for (size_t i = 0; i < st->nframes; i++)
            ck_assert_msg(vec_frame_matches(&st->frames[i], got[s][i].type,
                                            got[s][i].data, got[s][i].len),
                          "%s step %zu frame %zu: got type %d '%.*s'", c->name,
                          s, i, got[s][i].type, (int)got[s][i].len,
                          got[s][i].data);
        if (st->server_closed)
            ck_assert_msg(!open || closes_within(fd, 3000),
                          "%s step %zu: broker did not close", c->name, s);
        else
            ck_assert_msg(open && !closes_within(fd, 50),
                          "%s step %zu: broker closed", c->name, s);
        if (st->server_closed)
            break;
    }
    for (size_t s = 0; s < c->nsteps; s++)
        free_frames(got[s], ngot[s]);
    nsq_frame_reader_destroy(r);
    close(fd);
    nsq_testd_destroy(t);
}

START_TEST(replay_case)
{
    char err[256];
    vec_case_t *c = vec_load(g_paths[_i], err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    if (needs_transforms(c))
        printf("skipped (needs TLS or compression in the broker): %s\n",
               c->name);
    else
        replay(c);
    vec_free(c);
}
END_TEST

/* Exactly the TLS and compression cases are skipped, no more. */
START_TEST(skipped_cases)
{
    int skipped = 0;
    for (int i = 0; i < g_npaths; i++) {
        char err[256];
        vec_case_t *c = vec_load(g_paths[i], err, sizeof err);
        ck_assert_msg(c != NULL, "%s", err);
        if (needs_transforms(c)) {
            skipped++;
            ck_assert_msg(
                strncmp(c->name, "tls_", 4) == 0 ||
                    strncmp(c->name, "compression_", 12) == 0 ||
                    strcmp(c->name, "handshake_identify_deflate_level_7") ==
                        0 ||
                    strcmp(c->name, "handshake_identify_snappy_and_deflate") ==
                        0,
                "%s skipped", c->name);
        }
        vec_free(c);
    }
    ck_assert_int_eq(g_npaths, 69);
    ck_assert_int_eq(skipped, 8);
}
END_TEST

int main(void)
{
    g_npaths = vec_list(NSQ_CONFORMANCE_DIR, &g_paths);
    if (g_npaths < 0)
        return 1;
    Suite *s = suite_create("testd_conformance");
    TCase *tc = tcase_create("nsqd-1.3.0");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, skipped_cases);
    tcase_add_loop_test(tc, replay_case, 0, g_npaths);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vec_list_free(g_paths, g_npaths);
    return failed ? 1 : 0;
}
