/*
 * Conformance: the bytes a real nsqd 1.3.0 exchanged with a client
 * (tests/conformance/nsqd-1.3.0) replayed through the codec.
 *
 * - frames: the frame reader parses every step's answer into exactly the
 *   recorded frames, fed whole and byte by byte;
 * - commands: the command reader, fed the client's bytes, yields the
 *   commands, or exactly the error code, text and close nsqd answered.  A
 *   small in-test session answers the commands the way nsqd did (OK, the
 *   IDENTIFY reply from nsq_identify_apply, AUTH against the capture's
 *   secret), and its frames must equal the recorded ones, step by step.
 *   The frames the codec made (IDENTIFY replies, the command reader's
 *   errors) are counted apart from those the session writes from
 *   constants (OK, CLOSE_WAIT, AUTH's answers), which test the vectors,
 *   not the library; of those, the recorded AUTH reply goes through
 *   nsq_auth_reply_parse and E_AUTH_FAILED through the error mapping;
 * - encoders: each accepted command, encoded again with nsq_cmd_*, gives
 *   back the client's bytes.
 *
 * Heartbeats and delivered messages come from timers and other
 * connections, not from the client's bytes, so they are left out of the
 * session comparison (the frame-reader check still parses them).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"
#include "vectors.h"

static char **g_paths;
static int g_npaths;

#define AUTH_SECRET "s3cret"
#define AUTH_REPLY                                                             \
    "{\"identity\":\"bench\",\"identity_url\":\"\",\"permission_count\":1}"

static vec_case_t *load_case(int i)
{
    char err[512];
    ck_assert_int_lt(i, g_npaths);
    vec_case_t *c = vec_load(g_paths[i], err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

/* ---------------------------------------------------------------- frames */

static void check_frames(const vec_case_t *c, size_t s, size_t chunk)
{
    const vec_step_t *st = &c->steps[s];
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t got = 0, off = 0;
    nsq_frame_t f;
    while (off < st->recv_decoded.len || got < st->nframes) {
        size_t n = st->recv_decoded.len - off;
        if (n > chunk)
            n = chunk;
        if (n)
            ck_assert_int_eq(
                nsq_frame_reader_feed(r, st->recv_decoded.data + off, n),
                NSQ_OK);
        off += n;
        int rc;
        while ((rc = nsq_frame_reader_next(r, &f)) == 1) {
            ck_assert_msg(got < st->nframes, "%s step %zu: extra frame",
                          c->name, s);
            const vec_frame_t *want = &st->frames[got];
            ck_assert_msg(vec_frame_matches(want, f.type, f.data, f.len) &&
                              want->size == f.len + 4,
                          "%s step %zu frame %zu differs", c->name, s, got);
            if (f.type == NSQ_FRAME_MESSAGE) {
                nsq_message_t m;
                ck_assert_int_eq(nsq_message_decode(f.data, f.len, &m), NSQ_OK);
                ck_assert_uint_eq(m.attempts, 1);
                ck_assert_uint_eq(m.body_len, f.len - NSQ_MSG_HEADER_LEN);
                ck_assert_ptr_eq(m.id, f.data + 10);
            }
            got++;
        }
        ck_assert_msg(rc == 0, "%s step %zu: reader error %s", c->name, s,
                      nsq_frame_reader_errstr(r));
        if (n == 0)
            break;
    }
    ck_assert_msg(got == st->nframes, "%s step %zu: %zu of %zu frames", c->name,
                  s, got, st->nframes);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    nsq_frame_reader_destroy(r);
}

START_TEST(frames_parse)
{
    vec_case_t *c = load_case(_i);
    for (size_t s = 0; s < c->nsteps; s++) {
        check_frames(c, s, SIZE_MAX);
        check_frames(c, s, 1);
        check_frames(c, s, 7);
    }
    vec_free(c);
}
END_TEST

/* ---------------------------------------------------------------- session */

/* Where a frame the session sent came from. */
typedef enum origin {
    FROM_CODEC,    /* made by the codec */
    SCRIPTED,      /* written from a constant in this test */
    SCRIPTED_AUTH, /* ... AUTH's reply: the recorded one is parsed */
} origin_t;

/* Frames compared with the recording, by origin, over every case run. */
static int g_compared[3];

typedef struct session {
    const vec_case_t *c;
    nsq_cmd_reader_t *reader;
    nsq_broker_info_t info;
    nsq_identify_settings_t ids;
    int oks_after_tls; /* OK frames nsqd sends once TLS is up */
    bool closed;
    nsq_buf_t out;       /* frames the session sent in the current step */
    origin_t origin[64]; /* ... and where each came from */
    size_t nout;
    int reencoded;
} session_t;

static void emit(session_t *ss, origin_t from, int32_t type, const void *data,
                 size_t len)
{
    ck_assert_uint_lt(ss->nout, 64);
    ss->origin[ss->nout++] = from;
    ck_assert_int_eq(nsq_frame_encode(&ss->out, type, data, len), NSQ_OK);
}

/* Encodes the IDENTIFY body again from its JSON, when it has exactly the
 * fields nsq_cmd_identify writes; returns false when it does not apply. */
static bool reencode_identify(const nsq_cmd_t *cmd, nsq_buf_t *b)
{
    static const char *const keys[] = {"client_id",
                                       "hostname",
                                       "user_agent",
                                       "feature_negotiation",
                                       "heartbeat_interval",
                                       "output_buffer_size",
                                       "output_buffer_timeout",
                                       "msg_timeout",
                                       "sample_rate",
                                       "tls_v1",
                                       "deflate",
                                       "deflate_level",
                                       "snappy"};
    cJSON *j = cJSON_ParseWithLength(cmd->body, cmd->body_len);
    if (!j || cJSON_GetArraySize(j) != 13) {
        cJSON_Delete(j);
        return false;
    }
    const cJSON *v[13];
    for (int i = 0; i < 13; i++) {
        v[i] = cJSON_GetArrayItem(j, i);
        if (!v[i] || strcmp(v[i]->string, keys[i]) != 0) {
            cJSON_Delete(j);
            return false;
        }
    }
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = v[0]->valuestring;
    id.hostname = v[1]->valuestring;
    id.user_agent = v[2]->valuestring;
    id.feature_negotiation = cJSON_IsTrue(v[3]);
    id.heartbeat_interval = (int64_t)v[4]->valuedouble;
    id.output_buffer_size = (int64_t)v[5]->valuedouble;
    id.output_buffer_timeout = (int64_t)v[6]->valuedouble;
    id.msg_timeout = (int64_t)v[7]->valuedouble;
    id.sample_rate = (int64_t)v[8]->valuedouble;
    id.tls_v1 = cJSON_IsTrue(v[9]);
    id.deflate = cJSON_IsTrue(v[10]);
    id.deflate_level = (int64_t)v[11]->valuedouble;
    id.snappy = cJSON_IsTrue(v[12]);
    nsq_err_t err = nsq_cmd_identify(b, &id);
    cJSON_Delete(j);
    ck_assert_int_eq(err, NSQ_OK);
    return true;
}

/* Encodes an accepted command again; false when the command has no
 * canonical encoding to compare with. */
static bool reencode(const nsq_cmd_t *cmd, nsq_buf_t *b)
{
    nsq_err_t err = NSQ_OK;
    switch (cmd->type) {
    case NSQ_CMD_IDENTIFY:
        return reencode_identify(cmd, b);
    case NSQ_CMD_AUTH:
        err = nsq_cmd_auth(b, cmd->body, cmd->body_len);
        break;
    case NSQ_CMD_PUB:
        err = nsq_cmd_pub(b, cmd->topic, cmd->body, cmd->body_len, NULL);
        break;
    case NSQ_CMD_DPUB:
        err = nsq_cmd_dpub(b, cmd->topic, cmd->number, cmd->body, cmd->body_len,
                           NULL);
        break;
    case NSQ_CMD_MPUB:
        err = nsq_cmd_mpub(b, cmd->topic, cmd->msgs, cmd->msg_count, NULL);
        break;
    case NSQ_CMD_NOP:
        err = nsq_cmd_nop(b);
        break;
    case NSQ_CMD_CLS:
        err = nsq_cmd_cls(b);
        break;
    case NSQ_CMD_SUB:
        err = nsq_cmd_sub(b, cmd->topic, cmd->channel);
        break;
    case NSQ_CMD_RDY:
        err = nsq_cmd_rdy(b, cmd->number, NULL);
        break;
    case NSQ_CMD_FIN:
        err = nsq_cmd_fin(b, cmd->id);
        break;
    default:
        return false;
    }
    ck_assert_int_eq(err, NSQ_OK);
    return true;
}

/* Answers one accepted command as nsqd did in the capture. */
static void answer(session_t *ss, const nsq_cmd_t *cmd)
{
    nsq_conn_state_t *st = nsq_cmd_reader_state(ss->reader);
    nsq_buf_t reply;
    nsq_buf_init(&reply);
    switch (cmd->type) {
    case NSQ_CMD_IDENTIFY: {
        nsq_err_t err = nsq_identify_apply(cmd->body, cmd->body_len, &ss->info,
                                           &ss->ids, &reply);
        if (err != NSQ_OK) {
            ck_assert(nsq_err_is_fatal(err));
            emit(ss, FROM_CODEC, NSQ_FRAME_ERROR, reply.data, reply.len);
            ss->closed = true;
            break;
        }
        emit(ss, FROM_CODEC, NSQ_FRAME_RESPONSE, reply.data, reply.len);
        st->heartbeat_ms = ss->ids.heartbeat_interval_ms;
        if (!ss->ids.feature_negotiation)
            break;
        int oks = (ss->ids.snappy || ss->ids.deflate) ? 1 : 0;
        if (ss->ids.tls_v1)
            ss->oks_after_tls = 1 + oks;
        else
            for (int i = 0; i < oks; i++)
                emit(ss, SCRIPTED, NSQ_FRAME_RESPONSE, "OK", 2);
        break;
    }
    case NSQ_CMD_AUTH:
        if (cmd->body_len == strlen(AUTH_SECRET) &&
            memcmp(cmd->body, AUTH_SECRET, cmd->body_len) == 0) {
            st->authorized = true;
            emit(ss, SCRIPTED_AUTH, NSQ_FRAME_RESPONSE, AUTH_REPLY,
                 strlen(AUTH_REPLY));
        } else {
            static const char failed[] = "E_AUTH_FAILED AUTH failed";
            nsq_err_t code = nsq_err_from_frame(failed, sizeof failed - 1);
            ck_assert_int_eq(code, NSQ_E_AUTH_FAILED);
            emit(ss, SCRIPTED, NSQ_FRAME_ERROR, failed, sizeof failed - 1);
            /* Whether nsqd closes is the codec's knowledge. */
            ss->closed = nsq_err_is_fatal(code);
        }
        break;
    case NSQ_CMD_PUB:
    case NSQ_CMD_MPUB:
    case NSQ_CMD_DPUB:
        emit(ss, SCRIPTED, NSQ_FRAME_RESPONSE, "OK", 2);
        break;
    case NSQ_CMD_SUB:
        st->state = NSQ_CONN_SUBSCRIBED;
        emit(ss, SCRIPTED, NSQ_FRAME_RESPONSE, "OK", 2);
        break;
    case NSQ_CMD_CLS:
        st->state = NSQ_CONN_CLOSING;
        emit(ss, SCRIPTED, NSQ_FRAME_RESPONSE, "CLOSE_WAIT", 10);
        break;
    default: /* NOP, RDY, FIN, REQ, TOUCH: no answer */
        break;
    }
    nsq_buf_free(&reply);
}

static bool skip_reencode(const char *name)
{
    /* Valid input that is not in canonical form: a \r\n line end, extra
     * parameters, an MPUB body size that does not match its messages. */
    return strcmp(name, "publish_pub_crlf") == 0 ||
           strcmp(name, "publish_pub_extra_params") == 0 ||
           strcmp(name, "mpub_body_size_too_small") == 0;
}

static void run_step(session_t *ss, size_t s)
{
    const vec_case_t *c = ss->c;
    const vec_step_t *step = &c->steps[s];
    nsq_conn_state_t *st = nsq_cmd_reader_state(ss->reader);
    ss->out.len = 0;
    ss->nout = 0;

    if (strcmp(step->action, "tls_handshake") == 0) {
        st->tls_active = true;
        for (; ss->oks_after_tls > 0; ss->oks_after_tls--)
            emit(ss, SCRIPTED, NSQ_FRAME_RESPONSE, "OK", 2);
    }
    /* The client half-closed: nsqd answers a command it was reading. */
    if (strcmp(step->action, "shutdown_write") == 0) {
        nsq_cmd_error_t err;
        if (nsq_cmd_reader_eof(ss->reader, &err) < 0)
            emit(ss, FROM_CODEC, NSQ_FRAME_ERROR, err.text, err.text_len);
        ss->closed = true;
    } else {
        ck_assert_uint_eq(nsq_cmd_reader_pending(ss->reader), 0);
    }
    if (step->send_plain.len)
        ck_assert_int_eq(nsq_cmd_reader_feed(ss->reader, step->send_plain.data,
                                             step->send_plain.len),
                         NSQ_OK);
    size_t start = 0;
    while (!ss->closed) {
        nsq_cmd_t cmd;
        nsq_cmd_error_t err;
        int rc = nsq_cmd_reader_next(ss->reader, &cmd, &err);
        if (rc == 0)
            break;
        if (rc < 0) {
            ck_assert(nsq_err_is_broker(err.code));
            ck_assert_int_eq(err.code,
                             nsq_err_from_frame(err.text, err.text_len));
            if (err.send_frame)
                emit(ss, FROM_CODEC, NSQ_FRAME_ERROR, err.text, err.text_len);
            if (err.fatal)
                ss->closed = true;
            break;
        }
        size_t end = step->send_plain.len - nsq_cmd_reader_pending(ss->reader);
        nsq_buf_t enc;
        nsq_buf_init(&enc);
        if (!skip_reencode(c->name) && reencode(&cmd, &enc)) {
            ck_assert_msg(enc.len == end - start &&
                              memcmp(enc.data, step->send_plain.data + start,
                                     enc.len) == 0,
                          "%s step %zu: re-encoded command differs", c->name,
                          s);
            ss->reencoded++;
        }
        nsq_buf_free(&enc);
        start = end;
        answer(ss, &cmd);
    }

    /* Compare what the session sent with what nsqd sent, leaving out the
     * frames that timers and other connections produce. */
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    if (ss->out.len)
        ck_assert_int_eq(nsq_frame_reader_feed(r, ss->out.data, ss->out.len),
                         NSQ_OK);
    nsq_frame_t f;
    size_t want = 0, k = 0;
    for (;;) {
        while (want < step->nframes &&
               (step->frames[want].type == NSQ_FRAME_MESSAGE ||
                (step->frames[want].data.len == 11 &&
                 memcmp(step->frames[want].data.data, "_heartbeat_", 11) == 0)))
            want++;
        int rc = nsq_frame_reader_next(r, &f);
        ck_assert_int_ge(rc, 0);
        if (rc == 0)
            break;
        ck_assert_msg(want < step->nframes, "%s step %zu: extra frame '%.*s'",
                      c->name, s, (int)f.len, f.data);
        ck_assert_msg(
            vec_frame_matches(&step->frames[want], f.type, f.data, f.len),
            "%s step %zu frame %zu: got type %d '%.*s', want '%.*s'", c->name,
            s, want, f.type, (int)f.len, f.data,
            (int)step->frames[want].data.len, step->frames[want].data.data);
        if (ss->origin[k] == SCRIPTED_AUTH) {
            /* nsqd's own AUTH reply, through the library's parser. */
            const vec_frame_t *rec = &step->frames[want];
            nsq_auth_reply_t ar;
            char perr[128] = "";
            ck_assert_msg(nsq_auth_reply_parse(rec->data.data, rec->data.len,
                                               &ar, perr,
                                               sizeof perr) == NSQ_OK,
                          "%s step %zu: AUTH reply: %s", c->name, s, perr);
            ck_assert_str_eq(ar.identity, "bench");
            ck_assert_int_eq(ar.permission_count, 1);
        }
        g_compared[ss->origin[k]]++;
        k++;
        want++;
    }
    ck_assert_msg(want == step->nframes, "%s step %zu: frame %zu missing",
                  c->name, s, want);
    ck_assert_msg(ss->closed == step->server_closed,
                  "%s step %zu: closed %d, nsqd closed %d", c->name, s,
                  ss->closed, step->server_closed);
    nsq_frame_reader_destroy(r);
}

/* Replays case i through a fresh session; returns how many commands were
 * encoded again and compared. */
static int replay_case(int i)
{
    session_t ss = {0};
    vec_case_t *c = load_case(i);
    ss.c = c;
    ss.reader = nsq_cmd_reader_new(NULL, true);
    ck_assert_ptr_nonnull(ss.reader);
    nsq_broker_info_default(&ss.info);
    ss.info.tls_enabled = c->tls_enabled;
    ss.info.auth_enabled = c->auth_enabled;
    nsq_identify_settings_init(&ss.ids, &ss.info);
    nsq_conn_state_t *st = nsq_cmd_reader_state(ss.reader);
    st->tls_required = c->tls_required;
    st->auth_enabled = c->auth_enabled;
    nsq_buf_init(&ss.out);
    for (size_t s = 0; s < c->nsteps; s++)
        run_step(&ss, s);
    nsq_buf_free(&ss.out);
    nsq_identify_settings_free(&ss.ids);
    nsq_cmd_reader_destroy(ss.reader);
    vec_free(c);
    return ss.reencoded;
}

START_TEST(session_replay)
{
    replay_case(_i);
}
END_TEST

/* The encoders were really compared, not skipped: count over all cases.
 * Likewise the frames: most of the session's come from the codec, not
 * from this test's constants. */
START_TEST(reencode_count)
{
    int total = 0;
    memset(g_compared, 0, sizeof g_compared);
    for (int i = 0; i < g_npaths; i++)
        total += replay_case(i);
    /* The 91 cases send well over 60 accepted, canonical commands. */
    ck_assert_int_ge(total, 60);
    printf("session frames compared: %d from the codec, %d scripted, %d "
           "scripted AUTH replies (parsed)\n",
           g_compared[FROM_CODEC], g_compared[SCRIPTED],
           g_compared[SCRIPTED_AUTH]);
    ck_assert_int_ge(g_compared[FROM_CODEC], 81);
    ck_assert_int_ge(g_compared[SCRIPTED_AUTH], 1);
}
END_TEST

START_TEST(vectors_present)
{
    ck_assert_int_eq(g_npaths, 91);
}
END_TEST

int main(void)
{
    g_npaths = vec_list(NSQ_CONFORMANCE_DIR, &g_paths);
    if (g_npaths < 0) {
        fprintf(stderr, "cannot list %s\n", NSQ_CONFORMANCE_DIR);
        return 1;
    }
    Suite *s = suite_create("conformance");
    TCase *tc = tcase_create("nsqd-1.3.0");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, vectors_present);
    tcase_add_loop_test(tc, frames_parse, 0, g_npaths);
    tcase_add_loop_test(tc, session_replay, 0, g_npaths);
    tcase_add_test(tc, reencode_count);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vec_list_free(g_paths, g_npaths);
    return failed ? 1 : 0;
}
