/* csv: a streaming reader of comma-separated text (RFC 4180 with the usual leniencies), one
 * record at a time, for the CSV importer in import_csv.c. It owns the parsing only: quoted
 * fields (commas, doubled quotes and line breaks inside quotes), LF, CRLF or CR line ends,
 * a UTF-8 byte-order mark, blank lines (skipped) and gzip-compressed input (read through
 * zlib, which passes plain files through). It knows nothing of numbers, headers or HDF5. */
#ifndef DMLP_CSV_H
#define DMLP_CSV_H

#include <stddef.h>

#include "core/util.h"

struct csv_reader;

/* One record. fields[i] is NUL-terminated with the quotes removed and "" turned into ";
 * quoted[i] tells whether the field was quoted. Valid until the next csv_next or csv_close. */
struct csv_record {
    size_t line;       /* 1-based line on which the record starts */
    size_t n_fields;
    char **fields;     /* [n_fields] */
    const unsigned char *quoted; /* [n_fields] */
};

/* Opens path for reading. A missing or unreadable file is DMLP_ERR_INPUT naming it. */
int csv_open(struct csv_reader **out, const char *path, struct dmlp_error *err);

/* Reads the next record that is not blank (a line with nothing but spaces or tabs) into
 * *rec, or sets *rec = NULL at the end of the file. Errors name the file and line: an
 * unterminated quoted field, text after a closing quote, corrupt gzip data (all
 * DMLP_ERR_INPUT), or a read error (DMLP_ERR_RUNTIME). */
int csv_next(struct csv_reader *r, const struct csv_record **rec, struct dmlp_error *err);

void csv_close(struct csv_reader **r);

#endif
