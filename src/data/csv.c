#define _POSIX_C_SOURCE 200809L
/* csv: the record reader behind csv.h. A byte-level state machine over a buffered zlib
 * stream; line ends (CRLF, CR) are folded into '\n' as bytes are read, so the parser sees
 * one kind of line end and counts lines in one place. */
#include "data/csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

enum { CSV_BUF = 1 << 16, CSV_EOF = -1 };

struct csv_reader {
    char *path;
    gzFile gz;
    unsigned char buf[CSV_BUF];
    size_t pos, len;
    int at_eof;          /* the stream has nothing left beyond buf */
    int started;         /* the first buffer (and any byte-order mark) has been seen */
    int pending;         /* a byte read ahead and pushed back, or CSV_EOF - 1 for none */
    size_t line;         /* line of the next byte to be read */

    char *text;          /* the record's fields, each NUL-terminated, back to back */
    size_t text_len, text_cap;
    size_t *starts;      /* [n] offsets of the fields in text */
    unsigned char *quoted;
    char **fields;
    size_t n, cap;
    struct csv_record rec;
};

static int fill(struct csv_reader *r, struct dmlp_error *err);
static int next_byte(struct csv_reader *r, int *c, struct dmlp_error *err);
static int push_byte(struct csv_reader *r, char c, struct dmlp_error *err);
static int begin_field(struct csv_reader *r, int quoted, struct dmlp_error *err);
static int read_record(struct csv_reader *r, int *got, struct dmlp_error *err);
static int is_blank(const struct csv_reader *r);

/* ---- public functions -------------------------------------------------------------------- */

int csv_open(struct csv_reader **out, const char *path, struct dmlp_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: cannot open: Is a directory", path);
    struct csv_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: out of memory", path);
    }
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        int e = errno;
        csv_close(&r);
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: cannot open: %s", path,
                         e ? strerror(e) : "out of memory");
    }
    r->pending = CSV_EOF - 1;
    r->line = 1;
    *out = r;
    return DMLP_OK;
}

int csv_next(struct csv_reader *r, const struct csv_record **rec, struct dmlp_error *err)
{
    *rec = NULL;
    for (;;) {
        int got = 0;
        int rc = read_record(r, &got, err);
        if (rc != DMLP_OK || !got)
            return rc;
        if (is_blank(r))
            continue;
        /* Pointers only now: text may have moved while it grew. */
        for (size_t i = 0; i < r->n; i++)
            r->fields[i] = r->text + r->starts[i];
        r->rec.n_fields = r->n;
        r->rec.fields = r->fields;
        r->rec.quoted = r->quoted;
        *rec = &r->rec;
        return DMLP_OK;
    }
}

void csv_close(struct csv_reader **r)
{
    if (!r || !*r)
        return;
    if ((*r)->gz)
        gzclose((*r)->gz);
    free((*r)->path);
    free((*r)->text);
    free((*r)->starts);
    free((*r)->quoted);
    free((*r)->fields);
    free(*r);
    *r = NULL;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static int fill(struct csv_reader *r, struct dmlp_error *err)
{
    r->pos = r->len = 0;
    if (r->at_eof)
        return DMLP_OK;
    int n = gzread(r->gz, r->buf, CSV_BUF);
    if (n < 0) {
        int zerr = Z_OK;
        const char *msg = gzerror(r->gz, &zerr);
        if (zerr == Z_ERRNO)
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s: read error: %s", r->path,
                             strerror(errno));
        if (zerr == Z_BUF_ERROR)
            return dmlp_fail(err, DMLP_ERR_INPUT, "%s: truncated gzip data", r->path);
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s: corrupt gzip data: %s", r->path, msg);
    }
    if (n == 0)
        r->at_eof = 1;
    r->len = (size_t)n;
    if (!r->started) {
        r->started = 1;
        /* A UTF-8 byte-order mark (spreadsheet exports) is not part of the first name. */
        if (r->len >= 3 && r->buf[0] == 0xEF && r->buf[1] == 0xBB && r->buf[2] == 0xBF)
            r->pos = 3;
    }
    return DMLP_OK;
}

/* The raw next byte, or CSV_EOF. */
static int raw_byte(struct csv_reader *r, int *c, struct dmlp_error *err)
{
    if (r->pending != CSV_EOF - 1) {
        *c = r->pending;
        r->pending = CSV_EOF - 1;
        return DMLP_OK;
    }
    if (r->pos == r->len) {
        int rc = fill(r, err);
        if (rc != DMLP_OK)
            return rc;
        if (r->pos == r->len) {
            *c = CSV_EOF;
            return DMLP_OK;
        }
    }
    *c = r->buf[r->pos++];
    return DMLP_OK;
}

/* The next byte with CRLF and a lone CR turned into '\n'; advances the line count past
 * each line end. A NUL byte means binary data, which would silently cut a field short. */
static int next_byte(struct csv_reader *r, int *c, struct dmlp_error *err)
{
    int rc = raw_byte(r, c, err);
    if (rc != DMLP_OK)
        return rc;
    if (*c == '\r') {
        int after;
        if ((rc = raw_byte(r, &after, err)) != DMLP_OK)
            return rc;
        if (after != '\n')
            r->pending = after;
        *c = '\n';
    }
    if (*c == '\n')
        r->line++;
    else if (*c == '\0')
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: NUL byte in the text (is this a binary "
                         "file?)", r->path, r->line);
    return DMLP_OK;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int push_byte(struct csv_reader *r, char c, struct dmlp_error *err)
{
    if (r->text_len + 1 >= r->text_cap &&
        grow((void **)&r->text, &r->text_cap, r->text_len + 2, 1))
        return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s:%zu: out of memory for a record", r->path,
                         r->rec.line);
    r->text[r->text_len++] = c;
    return DMLP_OK;
}

/* Ends the current field (if any) and starts the next at the end of text. */
static int begin_field(struct csv_reader *r, int quoted, struct dmlp_error *err)
{
    size_t cap = r->cap;
    if (r->n + 1 > r->cap) {
        size_t c1 = cap, c2 = cap, c3 = cap;
        if (grow((void **)&r->starts, &c1, r->n + 1, sizeof *r->starts) ||
            grow((void **)&r->quoted, &c2, r->n + 1, 1) ||
            grow((void **)&r->fields, &c3, r->n + 1, sizeof *r->fields))
            return dmlp_fail(err, DMLP_ERR_RUNTIME, "%s:%zu: out of memory for a record",
                             r->path, r->rec.line);
        r->cap = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
    }
    r->starts[r->n] = r->text_len;
    r->quoted[r->n] = (unsigned char)quoted;
    r->n++;
    return DMLP_OK;
}

/* Terminates the last field with a NUL. */
static int end_field(struct csv_reader *r, struct dmlp_error *err)
{
    return push_byte(r, '\0', err);
}

/* Where read_record is within a record; RECORD_END once a line end has ended it. */
enum csv_state { FIELD_START, UNQUOTED, QUOTED, RECORD_END };

/* Ends the current field and starts the next, after a comma. */
static int next_field(struct csv_reader *r, struct dmlp_error *err)
{
    int rc = end_field(r, err);
    if (rc == DMLP_OK)
        rc = begin_field(r, 0, err);
    return rc;
}

/* A byte of an unquoted field: a comma starts the next field, a line end (or the end of
 * the file) ends the record, anything else is the field's. */
static int unquoted_byte(struct csv_reader *r, int c, enum csv_state *state,
                         struct dmlp_error *err)
{
    if (c == ',') {
        const int rc = next_field(r, err);
        if (rc == DMLP_OK)
            *state = FIELD_START;
        return rc;
    }
    if (c == '\n' || c == CSV_EOF) {
        *state = RECORD_END;
        return end_field(r, err);
    }
    return push_byte(r, (char)c, err);
}

/* After a quote inside a quoted field: "" is a quote; any other quote closes the field. */
static int after_quote(struct csv_reader *r, enum csv_state *state, struct dmlp_error *err)
{
    int after;
    const int rc = next_byte(r, &after, err);
    if (rc != DMLP_OK)
        return rc;
    if (after == '"')
        return push_byte(r, '"', err);
    /* The byte after a closing quote must end the field or the record. */
    if (after == ',' || after == '\n' || after == CSV_EOF)
        return unquoted_byte(r, after, state, err);
    return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: field %zu: unexpected '%c' after a closing "
                     "quote (a quote inside a quoted field is written \"\")", r->path, r->line,
                     r->n, after);
}

/* A byte of a quoted field, whose quote opened on quote_line. */
static int quoted_byte(struct csv_reader *r, int c, size_t quote_line, enum csv_state *state,
                       struct dmlp_error *err)
{
    if (c == CSV_EOF)
        return dmlp_fail(err, DMLP_ERR_INPUT, "%s:%zu: field %zu: the quote opened on this "
                         "line is never closed", r->path, quote_line, r->n);
    if (c == '"')
        return after_quote(r, state, err);
    return push_byte(r, (char)c, err);
}

/* Reads one record (possibly blank); *got = 0 at the end of the file. */
static int read_record(struct csv_reader *r, int *got, struct dmlp_error *err)
{
    enum csv_state state = FIELD_START;
    *got = 0;
    r->n = 0;
    r->text_len = 0;
    r->rec.line = r->line;
    size_t quote_line = r->line;
    int rc = DMLP_OK, c, any = 0;
    while (rc == DMLP_OK && state != RECORD_END) {
        if ((rc = next_byte(r, &c, err)) != DMLP_OK)
            return rc;
        if (c == CSV_EOF && !any)
            return DMLP_OK; /* nothing after the last line end */
        if (!any) {
            any = 1;
            if ((rc = begin_field(r, 0, err)) != DMLP_OK)
                return rc;
        }
        if (state == FIELD_START && c == '"') {
            r->quoted[r->n - 1] = 1;
            quote_line = r->line;
            state = QUOTED;
        } else if (state == QUOTED) {
            rc = quoted_byte(r, c, quote_line, &state, err);
        } else {
            state = UNQUOTED; /* at a field's start too: the byte belongs to an unquoted field */
            rc = unquoted_byte(r, c, &state, err);
        }
    }
    *got = state == RECORD_END;
    return rc;
}

/* A record of one unquoted field holding only spaces and tabs is a blank line. */
static int is_blank(const struct csv_reader *r)
{
    if (r->n != 1 || r->quoted[0])
        return 0;
    for (const char *p = r->text; *p; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}
