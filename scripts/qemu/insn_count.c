/*
 * insn_count.c: a QEMU TCG plugin that counts the guest instructions a program executes, in all and
 * per function (symbol), with the vector FMAs among them. For instruction counts of attend's kernels
 * on a target this machine is not (aarch64 under qemu-aarch64): QEMU gives no timings worth reading,
 * but the count of executed instructions, and of instructions per FMA, is exact.
 *
 * Debian's qemu-user (7.2) is built with plugin support (-plugin, and the qemu_plugin_* API exported
 * by the qemu-<arch> binaries) but ships no plugins and no qemu-plugin.h; this file declares the few
 * API functions it uses itself (plugin API version 1, QEMU 4.2 to 8.1). Build and run:
 *
 *   gcc -O2 -shared -fPIC -o insn_count.so scripts/qemu/insn_count.c
 *   qemu-aarch64 -L /usr/aarch64-linux-gnu -plugin ./insn_count.so,top=20 -d plugin -D counts.txt \
 *       build-arm64/tests/attend_shapes_test --gtest_filter='...'
 *   c++filt < counts.txt          (the names are mangled)
 *
 * scripts/qemu/one_call.cpp runs a single forward call (a path and a shape, one thread), for counts
 * of the kernels alone; docs/perf-notes.md has the NEON micro-kernel's counts.
 *
 * Arguments (-plugin ./insn_count.so,arg=value,...):
 *   top=N        functions listed, most instructions first (default 25)
 *   match=TEXT   count only functions whose (mangled) name contains TEXT; the total stays the total
 *
 * The report (to the -d plugin log, or stderr without -D) has, for each function: the instructions
 * it executed, the vector FMAs among them (fmla/fmls/fmadd... with a vector register: v<n>. or z<n>.),
 * loads and stores, and instructions per vector FMA. Counters are plain 64-bit adds inlined into the
 * translated code: exact for a single-threaded guest; with several guest threads increments can race
 * and be lost, so count with one thread (attend's thread count 1). Symbols come from the main
 * executable's symbol table (build with symbols; shared libraries show as "?"). Inlined code counts
 * towards the function it was inlined into.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The QEMU plugin API (qemu-plugin.h, API version 1), the parts used here ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t; /* not read */
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* ---- Counters: one record per function, found by name (a small open-addressing table) ---- */
enum { kInsns, kVecFma, kLoads, kStores, kCounters };
typedef struct {
  const char *name; /* owned; NULL: empty slot */
  uint64_t count[kCounters];
} Func;

#define TABLE_SIZE 65536 /* power of two; functions that ran, far fewer in practice */
static Func table[TABLE_SIZE];
static Func overflow = {"(table full)", {0}};
static int top_n = 25;
static const char *match = NULL;
static uint64_t total_insns = 0;

static Func *func_for(const char *name) {
  if (name == NULL) name = "?";
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = name; *p; ++p) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  for (size_t i = 0; i < TABLE_SIZE; ++i) {
    Func *f = &table[(h + i) & (TABLE_SIZE - 1)];
    if (f->name == NULL) {
      f->name = strdup(name);
      return f;
    }
    if (strcmp(f->name, name) == 0) return f;
  }
  return &overflow;
}

/* The mnemonic's class from capstone's text, e.g. "fmla     v0.4s, v1.4s, v2.s[0]". */
static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }
static bool is_vector_fma(const char *d) {
  if (!(starts_with(d, "fmla") || starts_with(d, "fmls") || starts_with(d, "bfmla") ||
        starts_with(d, "fmad") || starts_with(d, "fmsb") || starts_with(d, "fnmla") || starts_with(d, "fnmls")))
    return false;
  const char *ops = strpbrk(d, " \t");
  return ops != NULL && (strstr(ops, " v") != NULL || strstr(ops, " z") != NULL);
}
static bool is_load(const char *d) { return d[0] == 'l' && d[1] == 'd'; }  /* ldr, ldp, ld1, ldur, ... */
static bool is_store(const char *d) { return d[0] == 's' && d[1] == 't'; } /* str, stp, st1, stur, ... */

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total_insns, 1);
    const char *sym = qemu_plugin_insn_symbol(insn);
    if (match != NULL && (sym == NULL || strstr(sym, match) == NULL)) continue;
    Func *f = func_for(sym);
    char *d = qemu_plugin_insn_disas(insn);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &f->count[kInsns], 1);
    if (d != NULL) {
      if (is_vector_fma(d)) qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &f->count[kVecFma], 1);
      if (is_load(d)) qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &f->count[kLoads], 1);
      if (is_store(d)) qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &f->count[kStores], 1);
      free(d);
    }
  }
}

static int by_insns(const void *a, const void *b) {
  const Func *x = *(const Func *const *)a, *y = *(const Func *const *)b;
  return x->count[kInsns] < y->count[kInsns] ? 1 : x->count[kInsns] > y->count[kInsns] ? -1 : 0;
}

static void report(qemu_plugin_id_t id, void *userdata) {
  (void)id;
  (void)userdata;
  static Func *funcs[TABLE_SIZE + 1];
  size_t n = 0;
  uint64_t counted = 0, fmas = 0;
  for (size_t i = 0; i < TABLE_SIZE; ++i)
    if (table[i].name != NULL && table[i].count[kInsns] > 0) funcs[n++] = &table[i];
  if (overflow.count[kInsns] > 0) funcs[n++] = &overflow;
  qsort(funcs, n, sizeof funcs[0], by_insns);
  for (size_t i = 0; i < n; ++i) {
    counted += funcs[i]->count[kInsns];
    fmas += funcs[i]->count[kVecFma];
  }
  char line[1024];
  snprintf(line, sizeof line, "insn_count: %" PRIu64 " instructions executed; %" PRIu64 " in %s, %" PRIu64
           " of them vector FMAs\n", total_insns, counted, match ? "the matching functions" : "all functions", fmas);
  qemu_plugin_outs(line);
  qemu_plugin_outs("insn_count:        insns      vec_fma        loads       stores  insn/fma  function\n");
  for (size_t i = 0; i < n && (int)i < top_n; ++i) {
    const uint64_t *c = funcs[i]->count;
    char ratio[32] = "-";
    if (c[kVecFma] > 0) snprintf(ratio, sizeof ratio, "%.2f", (double)c[kInsns] / (double)c[kVecFma]);
    snprintf(line, sizeof line, "insn_count: %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %9s  %.600s\n",
             c[kInsns], c[kVecFma], c[kLoads], c[kStores], ratio, funcs[i]->name);
    qemu_plugin_outs(line);
  }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (starts_with(argv[i], "top=")) {
      top_n = atoi(argv[i] + 4);
    } else if (starts_with(argv[i], "match=")) {
      match = strdup(argv[i] + 6);
    } else {
      fprintf(stderr, "insn_count: unknown argument %s (top=N, match=TEXT)\n", argv[i]);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
  qemu_plugin_register_atexit_cb(id, report, NULL);
  return 0;
}
