#include "vectors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends the decoded hex string to b; false on bad hex or no memory. */
static bool hex_append(vec_bytes_t *b, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2)
        return false;
    unsigned char *d = realloc(b->data, b->len + n / 2 + 1);
    if (!d)
        return false;
    b->data = d;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        b->data[b->len++] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

unsigned char *vec_unhex(const char *hex, size_t *len)
{
    vec_bytes_t b = {0};
    if (!hex_append(&b, hex)) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data ? b.data : calloc(1, 1);
}

static bool repeat_append(vec_bytes_t *b, const char *hex, size_t count)
{
    vec_bytes_t one = {0};
    if (!hex_append(&one, hex) || one.len != 1) {
        free(one.data);
        return false;
    }
    unsigned char *d = realloc(b->data, b->len + count + 1);
    if (!d) {
        free(one.data);
        return false;
    }
    b->data = d;
    memset(b->data + b->len, one.data[0], count);
    b->len += count;
    free(one.data);
    return true;
}

static const char *str_field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool copy_str(char *dst, size_t cap, const char *src)
{
    if (!src)
        src = "";
    if (strlen(src) >= cap)
        return false;
    strcpy(dst, src);
    return true;
}

static bool load_frames(vec_step_t *st, const cJSON *frames)
{
    int n = cJSON_GetArraySize(frames);
    st->frames = calloc(n ? (size_t)n : 1, sizeof(vec_frame_t));
    if (!st->frames)
        return false;
    st->nframes = (size_t)n;
    for (int i = 0; i < n; i++) {
        const cJSON *f = cJSON_GetArrayItem(frames, i);
        vec_frame_t *vf = &st->frames[i];
        vf->type = (int32_t)cJSON_GetObjectItem(f, "type")->valuedouble;
        vf->size = (uint32_t)cJSON_GetObjectItem(f, "size")->valuedouble;
        const char *hex = str_field(f, "data_hex");
        if (!hex || !hex_append(&vf->data, hex))
            return false;
        const cJSON *vr = cJSON_GetObjectItem(f, "variable_ranges");
        int nv = cJSON_GetArraySize(vr);
        if (nv > 4)
            return false;
        for (int j = 0; j < nv; j++) {
            const cJSON *r = cJSON_GetArrayItem(vr, j);
            vf->var[j][0] = (size_t)cJSON_GetArrayItem(r, 0)->valuedouble;
            vf->var[j][1] = (size_t)cJSON_GetArrayItem(r, 1)->valuedouble;
        }
        vf->nvar = (size_t)nv;
    }
    return true;
}

static bool load_step(vec_step_t *st, const cJSON *s)
{
    const char *hex = str_field(s, "send_hex");
    const cJSON *parts = cJSON_GetObjectItem(s, "send_parts");
    if (hex) {
        if (!hex_append(&st->send, hex))
            return false;
    } else if (cJSON_IsArray(parts)) {
        const cJSON *p;
        cJSON_ArrayForEach(p, parts)
        {
            const char *ph = str_field(p, "hex");
            const char *rh = str_field(p, "repeat_hex");
            const cJSON *cnt = cJSON_GetObjectItem(p, "count");
            if (ph && !hex_append(&st->send, ph))
                return false;
            if (rh && (!cJSON_IsNumber(cnt) ||
                       !repeat_append(&st->send, rh, (size_t)cnt->valuedouble)))
                return false;
        }
        const cJSON *len = cJSON_GetObjectItem(s, "send_len");
        if (!cJSON_IsNumber(len) || (size_t)len->valuedouble != st->send.len)
            return false;
    }
    const char *plain = str_field(s, "send_plain_hex");
    st->compressed_send = plain != NULL;
    if (!hex_append(&st->send_plain, plain ? plain : "") ||
        (!plain && st->send.len &&
         !(st->send_plain.data = realloc(st->send_plain.data, st->send.len))))
        return false;
    if (!plain && st->send.len) {
        memcpy(st->send_plain.data, st->send.data, st->send.len);
        st->send_plain.len = st->send.len;
    }
    if (!copy_str(st->action, sizeof st->action, str_field(s, "action")) ||
        !copy_str(st->transport, sizeof st->transport,
                  str_field(s, "transport")) ||
        !copy_str(st->recv_encoding, sizeof st->recv_encoding,
                  str_field(s, "recv_encoding")))
        return false;
    const cJSON *side = cJSON_GetObjectItem(s, "side_action");
    st->side_publish = side != NULL;
    if (side) {
        const char *sh = str_field(side, "send_hex");
        const char *sr = str_field(side, "recv_hex");
        if (!sh || !sr || !hex_append(&st->side_send, sh))
            return false;
        /* Every frame the side connection got was a 10-byte OK. */
        st->side_nframes = strlen(sr) / 20;
    }
    if (!hex_append(&st->recv,
                    str_field(s, "recv_hex") ? str_field(s, "recv_hex") : ""))
        return false;
    const char *dec = str_field(s, "recv_decoded_hex");
    if (!hex_append(&st->recv_decoded, dec ? dec : str_field(s, "recv_hex")))
        return false;
    const cJSON *coff = cJSON_GetObjectItem(s, "recv_compressed_offset");
    if (coff) {
        if (!cJSON_IsNumber(coff) || coff->valuedouble < 0 ||
            (size_t)coff->valuedouble > st->recv.len)
            return false;
        st->recv_compressed_offset = (size_t)coff->valuedouble;
    }
    st->server_closed = cJSON_IsTrue(cJSON_GetObjectItem(s, "server_closed"));
    const cJSON *subs = cJSON_GetObjectItem(s, "send_substitutions");
    int ns = cJSON_GetArraySize(subs);
    if (ns > 2)
        return false;
    for (int i = 0; i < ns; i++) {
        const cJSON *x = cJSON_GetArrayItem(subs, i);
        const cJSON *dst = cJSON_GetObjectItem(x, "send_range");
        const cJSON *src = cJSON_GetObjectItem(x, "from_data_range");
        st->subst[i].dst_start =
            (size_t)cJSON_GetArrayItem(dst, 0)->valuedouble;
        st->subst[i].dst_end = (size_t)cJSON_GetArrayItem(dst, 1)->valuedouble;
        st->subst[i].src_start =
            (size_t)cJSON_GetArrayItem(src, 0)->valuedouble;
        st->subst[i].from_step =
            (size_t)cJSON_GetObjectItem(x, "from_step")->valuedouble;
        st->subst[i].from_frame =
            (size_t)cJSON_GetObjectItem(x, "from_frame")->valuedouble;
    }
    st->nsubst = (size_t)ns;
    return load_frames(st, cJSON_GetObjectItem(s, "recv_frames"));
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len + 1 >= cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + *len, 1, cap - *len - 1, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

vec_case_t *vec_load(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *text = slurp(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    vec_case_t *c = calloc(1, sizeof *c);
    if (!root || !c) {
        snprintf(err, errlen, "%s: bad JSON", path);
        cJSON_Delete(root);
        free(c);
        return NULL;
    }
    bool ok = copy_str(c->name, sizeof c->name, str_field(root, "name")) &&
              copy_str(c->group, sizeof c->group, str_field(root, "group")) &&
              copy_str(c->topic, sizeof c->topic, str_field(root, "topic"));
    const cJSON *flag;
    cJSON_ArrayForEach(flag, cJSON_GetObjectItem(root, "nsqd_flags"))
    {
        const char *f = cJSON_IsString(flag) ? flag->valuestring : "";
        if (strncmp(f, "--auth-http-address", 19) == 0)
            c->auth_enabled = true;
        if (strcmp(f, "--tls-required=true") == 0)
            c->tls_required = true;
        if (strncmp(f, "--tls-cert", 10) == 0)
            c->tls_enabled = true;
    }
    const cJSON *steps = cJSON_GetObjectItem(root, "steps");
    int n = cJSON_GetArraySize(steps);
    c->steps = calloc(n ? (size_t)n : 1, sizeof(vec_step_t));
    ok = ok && c->steps;
    c->nsteps = c->steps ? (size_t)n : 0;
    for (int i = 0; ok && i < n; i++)
        ok = load_step(&c->steps[i], cJSON_GetArrayItem(steps, i));
    cJSON_Delete(root);
    if (!ok) {
        snprintf(err, errlen, "%s: unexpected content", path);
        vec_free(c);
        return NULL;
    }
    return c;
}

void vec_free(vec_case_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsteps; i++) {
        vec_step_t *st = &c->steps[i];
        free(st->send.data);
        free(st->send_plain.data);
        free(st->side_send.data);
        free(st->recv.data);
        free(st->recv_decoded.data);
        for (size_t j = 0; st->frames && j < st->nframes; j++)
            free(st->frames[j].data.data);
        free(st->frames);
    }
    free(c->steps);
    free(c);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int vec_list(const char *dir, char ***paths)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0, cap = 0;
    char **list = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nl = realloc(list, (size_t)cap * sizeof *nl);
            if (!nl)
                break;
            list = nl;
        }
        size_t plen = strlen(dir) + l + 2;
        list[n] = malloc(plen);
        if (!list[n])
            break;
        snprintf(list[n], plen, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(list, (size_t)n, sizeof *list, cmp_str);
    *paths = list;
    return n;
}

void vec_list_free(char **paths, int n)
{
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

bool vec_frame_matches(const vec_frame_t *f, int32_t type, const void *data,
                       size_t len)
{
    if (type != f->type || len != f->data.len)
        return false;
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++) {
        bool variable = false;
        for (size_t v = 0; v < f->nvar; v++)
            if (i >= f->var[v][0] && i < f->var[v][1])
                variable = true;
        if (!variable && d[i] != f->data.data[i])
            return false;
    }
    return true;
}
