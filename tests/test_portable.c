/* test_portable: the default build runs on every x86-64 CPU, and every CPU trains the same
 * network, bit for bit where the instruction sets round alike:
 * - the disassembly of libdmlp holds instructions beyond baseline x86-64 (SSE2) only in
 *   the per-instruction-set files (gemm_avx2, gemm_avx512, gemm_wide16, vec_avx2,
 *   vec_avx512), so no other code can die with SIGILL on an older node;
 * - under qemu-user posing as a Haswell (AVX2 + FMA, no AVX-512) and as a Westmere (SSE4.2,
 *   no AVX), dmlp --version names the avx2 and generic kernels, trains and evaluates;
 * - on this CPU, DMLP_KERNEL=avx2 and generic train end to end beside the default.
 * The avx2 kernel's weights (qemu Haswell, or native) must equal the default kernel's bit
 * for bit: the avx512 build sums in the same order with the same fused multiply-adds, and
 * the loops outside the GEMM never fuse (vec.h). The generic kernel's weights must agree
 * within 1e-4 of the largest weight: its GEMM rounds each product and sum separately where
 * the others fuse them (about 2^-24 relative per operation), which these ~100 steps grow to
 * 1e-7 to 2e-7 (measured), while a wrong kernel is off by O(1).
 * Two runs cover the loops: a classifier (tanh, leaky_relu, sigmoid, softmax; AdamW, clipping,
 * standardisation) and a regression (mse; Nesterov SGD with weight decay; the reproducible
 * mode's fixed-point sums; standardisation), the classifier also at 2 ranks (the
 * shared-memory gradient sum). */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "testutil.h"

#define MPIRUN DMLP_MPIEXEC " --oversubscribe --bind-to none -np "
#define GENERIC_TOL 1e-4

static char g_dir[512];

/* ---- the disassembly ------------------------------------------------------------------ */

/* The objects that may use instructions beyond SSE2: the per-instruction-set builds. */
static int isa_object(const char *obj)
{
    static const char *const allowed[] = {"gemm_avx2.c.o", "gemm_avx512.c.o", "gemm_wide16.c.o",
                                          "vec_avx2.c.o", "vec_avx512.c.o"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(obj, allowed[i]))
            return 1;
    return 0;
}

/* 1 when an instruction needs more than baseline x86-64: AVX and later (VEX/EVEX
 * mnemonics start with v, AVX-512 mask instructions with k), BMI1/2, LZCNT, POPCNT, MOVBE,
 * and SSE3 to SSE4.2. */
static int beyond_baseline(const char *mn)
{
    static const char *const exact[] = {"andn",  "bextr", "blsi",   "blsmsk", "blsr", "bzhi",
                                        "lzcnt", "tzcnt", "pdep",   "pext",   "rorx", "sarx",
                                        "shlx",  "shrx",  "movbe",  "popcnt", "crc32"};
    static const char *const prefix[] = {
        "v",        "kmov",     "kand",      "kor",       "kxor",     "knot",     "kshift",
        "ktest",    "kunpck",   "kadd",      "addsub",    "hadd",     "hsub",     "movddup",
        "movshdup", "movsldup", "lddqu",     "pshufb",    "phadd",    "phsub",    "pabs",
        "palignr",  "pmulhrsw", "pmaddubsw", "psign",     "ptest",    "pblend",   "blendp",
        "blendvp",  "dpp",      "insertps",  "extractps", "pextrb",   "pextrd",   "pextrq",
        "pinsrb",   "pinsrd",   "pinsrq",    "pmulld",    "pmuldq",   "pmaxsb",   "pmaxsd",
        "pmaxud",   "pmaxuw",   "pminsb",    "pminsd",    "pminud",   "pminuw",   "round",
        "pmovsx",   "pmovzx",   "packusdw",  "pcmpeqq",   "pcmpgtq",  "phminposuw",
        "mpsadbw",  "movntdqa", "pcmpestr",  "pcmpistr"};
    if (!strncmp(mn, "verr", 4) || !strncmp(mn, "verw", 4))
        return 0;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(mn, exact[i]))
            return 1;
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (!strncmp(mn, prefix[i], strlen(prefix[i])))
            return 1;
    return 0;
}

static void test_disassembly(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "objdump -d --no-show-raw-insn %s", DMLP_LIBRARY);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char line[4096], obj[256] = "", first[512] = "";
    size_t objects = 0, isa_objects = 0, isa_wide = 0, bad = 0;
    while (fgets(line, sizeof line, p)) {
        char name[256];
        if (sscanf(line, "%255[^: ]: file format", name) == 1 && strstr(line, "file format")) {
            snprintf(obj, sizeof obj, "%s", name);
            objects++;
            isa_objects += isa_object(obj);
            continue;
        }
        const char *tab = strstr(line, ":\t");
        if (!tab || !obj[0])
            continue;
        char mn[64] = "";
        const char *at = tab + 2;
        /* Skip instruction prefixes to reach the mnemonic. */
        for (;;) {
            if (sscanf(at, "%63s", mn) != 1)
                break;
            if (strcmp(mn, "lock") && strcmp(mn, "rep") && strcmp(mn, "repz") &&
                strcmp(mn, "repnz") && strcmp(mn, "data16") && strcmp(mn, "notrack") &&
                strcmp(mn, "bnd") && strcmp(mn, "cs") && strcmp(mn, "ds"))
                break;
            at = strstr(at, mn) + strlen(mn);
        }
        const int wide = strstr(line, "%ymm") || strstr(line, "%zmm") || beyond_baseline(mn);
        if (isa_object(obj)) {
            isa_wide += wide;
        } else if (wide) {
            if (bad++ == 0)
                snprintf(first, sizeof first, "%s: %s", obj, tab + 2);
        }
    }
    CU_ASSERT_EQUAL(pclose(p), 0);
    printf("\n    %zu objects, %zu per-instruction-set ones with %zu AVX instructions",
           objects, isa_objects, isa_wide);
    if (bad)
        printf("\n    %zu instructions beyond baseline x86-64 elsewhere; the first: %s", bad,
               first);
    CU_ASSERT(objects >= 10);
    CU_ASSERT_EQUAL(isa_objects, 5);
    CU_ASSERT(isa_wide > 1000); /* the scan sees AVX where it is */
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- training on each CPU -------------------------------------------------------------- */

static const char *const classifier_yaml =
    "model:\n"
    "  layers:\n"
    "    - {units: 24, activation: tanh}\n"
    "    - {units: 24, activation: leaky_relu}\n"
    "    - {units: 16, activation: sigmoid}\n"
    "    - {units: 3, activation: softmax}\n"
    "  init: xavier\n"
    "loss: cross_entropy\n"
    "optimizer: {name: adamw, lr: 0.01, weight_decay: 0.01, clip_norm: 1.0}\n"
    "data: {train: blobs.h5, normalize: standard}\n"
    "training: {epochs: 4, batch_size: 32, seed: 3}\n"
    "checkpoint: {every_epochs: 0, keep_last: 1}\n";

static const char *const regression_yaml =
    "model:\n"
    "  layers:\n"
    "    - {units: 32, activation: relu}\n"
    "    - {units: 16, activation: tanh}\n"
    "    - {units: 2, activation: linear}\n"
    "loss: mse\n"
    "optimizer: {name: sgd, lr: 0.02, momentum: 0.9, nesterov: true, weight_decay: 0.001}\n"
    "data: {train: wave.h5, normalize: standard}\n"
    "training: {epochs: 4, batch_size: 40, seed: 5, reproducible: true}\n"
    "checkpoint: {every_epochs: 0, keep_last: 1}\n";

/* Writes wave.csv: 5 inputs on mixed scales, 2 smooth targets. */
static void write_wave(const char *path)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    struct rng r;
    rng_seed(&r, 11, 0);
    fprintf(f, "a,b,c,d,e,t0,t1\n");
    for (int i = 0; i < 480; i++) {
        double x[5];
        for (int j = 0; j < 5; j++)
            x[j] = (rng_uniform(&r) * 2.0 - 1.0) * (j == 1 ? 100.0 : 1.0);
        fprintf(f, "%.6f,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f\n", x[0], x[1], x[2], x[3], x[4],
                x[0] * x[2] + 0.01 * x[1], x[3] - x[4] * x[4]);
    }
    fclose(f);
}

static void test_data(void)
{
    char csv[700];
    snprintf(csv, sizeof csv, "%s/wave.csv", g_dir);
    write_wave(csv);
    CU_ASSERT_EQUAL(tu_sh("cd %s && awk -v n=600 -v seed=7 -f %s/tests/interop/blobs.awk > "
                           "blobs.csv && %s import csv blobs.csv --label-column cls --output "
                           "blobs.h5 && %s import csv wave.csv --target-columns t0,t1 "
                           "--output wave.h5",
                           g_dir, DMLP_SOURCE_DIR, DMLP_BINARY, DMLP_BINARY),
                    0);
    char path[700];
    snprintf(path, sizeof path, "%s/classifier.yaml", g_dir);
    CU_ASSERT_EQUAL(tu_write_file(path, classifier_yaml), 0);
    snprintf(path, sizeof path, "%s/regression.yaml", g_dir);
    CU_ASSERT_EQUAL(tu_write_file(path, regression_yaml), 0);
}

/* Trains config (classifier or regression) into run directory tag with the command prefix
 * pre (environment, mpirun or qemu) and returns the exit code. */
static int train(const char *config, const char *tag, const char *pre)
{
    return tu_sh("cd %s && %s %s train %s.yaml --quiet --set checkpoint.dir=run-%s-%s",
                 g_dir, pre, DMLP_BINARY, config, config, tag);
}

/* The weights of run tag against the default kernel's (run "native"). */
static double diff_to_native(const char *config, const char *tag)
{
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/run-%s-native/latest.h5", g_dir, config);
    snprintf(b, sizeof b, "%s/run-%s-%s/latest.h5", g_dir, config, tag);
    const double d = tu_checkpoint_diff(a, b);
    printf("\n    %s %s vs native: max relative difference %.3g", config, tag, d);
    return d;
}

static const char *const configs[] = {"classifier", "regression"};

static void test_native_kernels(void)
{
    for (int c = 0; c < 2; c++) {
        const char *cfg = configs[c];
        CU_ASSERT_EQUAL_FATAL(train(cfg, "native", ""), 0);
        if (tu_sh("%s --version", DMLP_BINARY) == 0 && strstr(tu_out, "avx2")) {
            CU_ASSERT_EQUAL(train(cfg, "avx2", "DMLP_KERNEL=avx2"), 0);
            CU_ASSERT_EQUAL(diff_to_native(cfg, "avx2"), 0.0);
        }
        CU_ASSERT_EQUAL(train(cfg, "generic", "DMLP_KERNEL=generic"), 0);
        const double g = diff_to_native(cfg, "generic");
        CU_ASSERT(g >= 0.0 && g <= GENERIC_TOL);
    }
    /* Two ranks: the gradient sum through shared memory runs the loop builds too. */
    CU_ASSERT_EQUAL(train("classifier", "native2", MPIRUN "2"), 0);
    if (tu_sh("%s --version", DMLP_BINARY) == 0 && strstr(tu_out, "avx2")) {
        CU_ASSERT_EQUAL(train("classifier", "avx2-2", "DMLP_KERNEL=avx2 " MPIRUN "2 -x "
                                                      "DMLP_KERNEL"),
                        0);
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/run-classifier-native2/latest.h5", g_dir);
        snprintf(b, sizeof b, "%s/run-classifier-avx2-2/latest.h5", g_dir);
        CU_ASSERT_EQUAL(tu_checkpoint_diff(a, b), 0.0);
    }
}

/* ---- qemu-user ------------------------------------------------------------------------ */

/* Not in sanitizer builds (DMLP_TEST_QEMU=0): AddressSanitizer's shadow memory cannot be
 * mapped under qemu-user, and what ships is the plain build, which the Release pass tests. */
#if DMLP_TEST_QEMU

static int have_qemu(void)
{
    static int have = -1;
    if (have < 0) {
        have = tu_sh("command -v qemu-x86_64") == 0;
        if (!have)
            printf("\n    qemu-x86_64 is missing: scripts/install-deps.sh installs qemu-user");
    }
    return have;
}

static void check_cpu(const char *cpu, const char *kernel, int bit_identical)
{
    char pre[128], tag[64];
    snprintf(pre, sizeof pre, "qemu-x86_64 -cpu %s", cpu);
    CU_ASSERT_EQUAL(tu_sh("%s %s --version 2>/dev/null", pre, DMLP_BINARY), 0);
    char want[64];
    snprintf(want, sizeof want, "kernels   %s:", kernel);
    CU_ASSERT(tu_has(want));
    if (!strcmp(kernel, "generic"))
        CU_ASSERT(strstr(tu_out, "avx2") == NULL); /* not even offered */
    for (int c = 0; c < 2; c++) {
        const char *cfg = configs[c];
        snprintf(tag, sizeof tag, "qemu-%s", cpu);
        CU_ASSERT_EQUAL(train(cfg, tag, pre), 0);
        const double d = diff_to_native(cfg, tag);
        if (bit_identical)
            CU_ASSERT_EQUAL(d, 0.0);
        CU_ASSERT(d >= 0.0 && d <= GENERIC_TOL);
        CU_ASSERT_EQUAL(tu_sh("cd %s && %s %s eval --checkpoint run-%s-%s/latest.h5 --data "
                               "%s.h5 2>/dev/null",
                               g_dir, pre, DMLP_BINARY, cfg, tag,
                               c == 0 ? "blobs" : "wave"),
                        0);
        CU_ASSERT(tu_has(c == 0 ? "accuracy" : "r2"));
    }
}

static void test_qemu_haswell(void)
{
    CU_ASSERT_FATAL(have_qemu());
    check_cpu("Haswell", "avx2", 1);
}

static void test_qemu_westmere(void)
{
    CU_ASSERT_FATAL(have_qemu());
    check_cpu("Westmere", "generic", 0);
}
#endif

static CU_TestInfo portable_tests[] = {
    {"only the per-instruction-set files go beyond SSE2", test_disassembly},
    {"test data", test_data},
    {"DMLP_KERNEL=avx2 bit-identical to the default, generic close", test_native_kernels},
#if DMLP_TEST_QEMU
    {"qemu Haswell: avx2, bit-identical weights, eval", test_qemu_haswell},
    {"qemu Westmere: generic, close weights, eval", test_qemu_westmere},
#endif
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"portable", NULL, NULL, NULL, NULL, portable_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    tu_mkdtemp(g_dir, sizeof g_dir, "portable");
    const int rc = tu_run(suites);
    if (rc == 0)
        tu_rmtree(g_dir);
    return rc;
}
