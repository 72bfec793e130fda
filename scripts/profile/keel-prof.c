/* keel-prof: a QEMU TCG plugin that counts the instructions executed at each address while a
 * profiling window is open. Keel's benchmark code opens the window with `hint #0x7e` and closes
 * it with `hint #0x7f` (NOPs to the CPU; keel_rt::sys::profile_mark, the test guest's
 * arch::profile_mark), or for the whole run with the argument window=always. At exit it writes "<address> <count>" lines for scripts/profile.py.
 *
 * Only QEMU's plugin entry points are declared here (API version 4, QEMU 10). Counts are per
 * translation block, so an exception in the middle of a block counts its tail once too often;
 * that is a few instructions per exception. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*vcpu_udata_cb_t)(unsigned int, void *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);
enum { CB_NO_REGS = 0 };

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, vcpu_udata_cb_t, int, void *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, vcpu_udata_cb_t, int, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *, void *, size_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 4;

#define HINT_OPEN 0xd5032fdfu  /* hint #0x7e */
#define HINT_CLOSE 0xd5032fffu /* hint #0x7f */

struct block { uint64_t *pcs; size_t n; uint64_t runs; };
static struct block **blocks;
static size_t nblocks, capacity;
/* One window for the whole machine: under icount the counter counts every CPU's instructions,
 * so the profile does too. QEMU runs the CPUs in one thread then. */
static int open_window;
static uint64_t windows;
static const char *out_path = "keel-prof.txt";

static void block_ran(unsigned int cpu, void *b) { if (open_window) ((struct block *)b)->runs++; }
static void window_open(unsigned int cpu, void *u) { open_window = 1; windows++; }
static void window_close(unsigned int cpu, void *u) { open_window = 0; }

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct block *b = calloc(1, sizeof *b);
    b->n = qemu_plugin_tb_n_insns(tb);
    b->pcs = calloc(b->n, sizeof *b->pcs);
    for (size_t i = 0; i < b->n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t op = 0;
        b->pcs[i] = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_insn_data(insn, &op, sizeof op);
        if (op == HINT_OPEN) qemu_plugin_register_vcpu_insn_exec_cb(insn, window_open, CB_NO_REGS, NULL);
        if (op == HINT_CLOSE) qemu_plugin_register_vcpu_insn_exec_cb(insn, window_close, CB_NO_REGS, NULL);
    }
    if (nblocks == capacity) {
        capacity = capacity ? capacity * 2 : 4096;
        blocks = realloc(blocks, capacity * sizeof *blocks);
    }
    blocks[nblocks++] = b;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_ran, CB_NO_REGS, b);
}

static void finished(qemu_plugin_id_t id, void *u) {
    FILE *f = fopen(out_path, "w");
    if (!f) { perror(out_path); return; }
    fprintf(f, "# windows %llu\n", (unsigned long long)windows);
    for (size_t i = 0; i < nblocks; i++)
        if (blocks[i]->runs)
            for (size_t j = 0; j < blocks[i]->n; j++)
                fprintf(f, "%llx %llu\n", (unsigned long long)blocks[i]->pcs[j], (unsigned long long)blocks[i]->runs);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4)) out_path = argv[i] + 4;
        else if (!strcmp(argv[i], "window=always")) open_window = 1, windows = 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, finished, NULL);
    return 0;
}
