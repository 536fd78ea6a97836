/*
 * wordcount: a wask task written in plain C99, built for WASI preview 1.
 *
 *   args = [OUT_FILE, INPUT...]
 *
 * Counts the lines, words and bytes of each INPUT, like `wc`, and writes the report to
 * OUT_FILE: one line per input in argument order, then a `total` line when there is more
 * than one. A word is a maximal run of bytes that are not ASCII white space; a line is a
 * newline byte. Relative paths are taken from the task's project directory (read from
 * /.wask/task.json), absolute ones from the workspace root; the report shows each path
 * as it was given.
 *
 * Every input is read before OUT_FILE is opened, so a failed run creates nothing.
 * Errors go to stderr: exit 2 for bad usage, 1 for an unreadable input or an unwritable
 * report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_JSON "/.wask/task.json"

struct counts {
    unsigned long long lines, words, bytes;
};

static const char *prog = "wordcount";

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Reads a whole file into a NUL-terminated buffer, or returns NULL with errno set. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            char *grown;
            cap = cap ? cap * 2 : 8192;
            grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f)) {
            int e = errno ? errno : EIO;
            free(buf);
            fclose(f);
            errno = e;
            return NULL;
        }
        if (feof(f))
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/*
 * The value of the top-level "project_dir" string of the task description. wask writes
 * it as compact JSON with keys sorted, so the key follows the "inputs" and "outputs"
 * arrays; a `"project_dir"` inside one of their strings is escaped (`\"`) and skipped.
 */
static char *project_dir(void)
{
    static const char key[] = "\"project_dir\"";
    size_t len;
    char *json = read_file(TASK_JSON, &len), *p, *out, *w;
    if (!json)
        return NULL;
    for (p = strstr(json, key); p && p > json && p[-1] == '\\'; p = strstr(p + 1, key))
        ;
    if (!p)
        goto bad;
    p += sizeof key - 1;
    while (is_space((unsigned char)*p))
        p++;
    if (*p++ != ':')
        goto bad;
    while (is_space((unsigned char)*p))
        p++;
    if (*p++ != '"')
        goto bad;
    out = w = malloc(strlen(p) + 1);
    if (!out)
        goto bad;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\') {
            p++;
            if (*p != '"' && *p != '\\' && *p != '/') { /* \uXXXX etc.: not in a path we accept */
                free(out);
                goto bad;
            }
        }
        *w++ = *p;
    }
    if (*p != '"') {
        free(out);
        goto bad;
    }
    *w = '\0';
    free(json);
    return out;
bad:
    free(json);
    errno = EINVAL;
    return NULL;
}

/* A workspace path for `arg`: absolute as given, relative under the project directory. */
static char *resolve(const char *dir, const char *arg)
{
    size_t dl = strlen(dir), al = strlen(arg);
    char *path;
    if (arg[0] == '/')
        dl = 0;
    path = malloc(dl + 1 + al + 1);
    if (!path) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    if (dl == 0) {
        memcpy(path, arg, al + 1);
    } else {
        memcpy(path, dir, dl);
        if (dir[dl - 1] != '/')
            path[dl++] = '/';
        memcpy(path + dl, arg, al + 1);
    }
    return path;
}

static struct counts count(const char *buf, size_t len)
{
    struct counts c = {0, 0, 0};
    int in_word = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        int ch = (unsigned char)buf[i];
        if (ch == '\n')
            c.lines++;
        if (is_space(ch)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            c.words++;
        }
    }
    c.bytes = len;
    return c;
}

static int print_row(FILE *f, const struct counts *c, const char *name)
{
    return fprintf(f, "%8llu %8llu %8llu %s\n", c->lines, c->words, c->bytes, name);
}

int main(int argc, char **argv)
{
    struct counts *rows, total = {0, 0, 0};
    char *dir, *out_path;
    FILE *out;
    int i, n = argc - 2, ok;

    if (argc < 3) {
        fprintf(stderr, "usage: %s OUT_FILE INPUT...\n", prog);
        return 2;
    }
    dir = project_dir();
    if (!dir) {
        fprintf(stderr, "%s: %s: %s\n", prog, TASK_JSON, strerror(errno));
        return 1;
    }
    rows = calloc((size_t)n, sizeof *rows);
    if (!rows) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }

    for (i = 0; i < n; i++) {
        char *path = resolve(dir, argv[i + 2]);
        size_t len;
        char *buf = read_file(path, &len);
        if (!buf) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
            return 1;
        }
        rows[i] = count(buf, len);
        total.lines += rows[i].lines;
        total.words += rows[i].words;
        total.bytes += rows[i].bytes;
        free(buf);
        free(path);
    }

    out_path = resolve(dir, argv[1]);
    out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "%s: %s: %s\n", prog, out_path, strerror(errno));
        return 1;
    }
    ok = fprintf(out, "%8s %8s %8s %s\n", "lines", "words", "bytes", "file") >= 0;
    for (i = 0; ok && i < n; i++)
        ok = print_row(out, &rows[i], argv[i + 2]) >= 0;
    if (ok && n > 1)
        ok = print_row(out, &total, "total") >= 0;
    if (fclose(out) != 0 || !ok) {
        fprintf(stderr, "%s: %s: %s\n", prog, out_path, strerror(errno));
        return 1;
    }
    return 0;
}
