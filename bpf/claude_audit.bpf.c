/* claude-audit kernel side: track Claude Code sessions and every descendant, report their execs.
 *
 * Every kernel struct field is read at an offset the daemon computed from the running kernel's BTF and
 * passed as -DOFF_* (the only headers on these machines are for another kernel, so their struct layouts
 * must not be used). Every probe is a raw tracepoint: it gets the tracepoint's TP_PROTO arguments (task
 * and binprm pointers, stable since 4.17 for these four), not the trace-event record, whose fields
 * changed between releases (sched_process_exit.group_dead came in 2025, task_rename.pid left and came
 * back), and raw tracepoints need no tracefs. */
#include <linux/sched.h>
#include "claude_audit.h"

#ifndef OFF_TASK_PID
#error "OFF_* offsets must be passed as -D flags (computed from BTF by the daemon)"
#endif
#ifndef MAX_TRACKED
#define MAX_TRACKED 65536
#endif
#ifndef MAX_ROOTS
#define MAX_ROOTS 4096
#endif
#ifndef RING_PAGES
#define RING_PAGES 4096
#endif
#ifndef NR_CPUS_POSSIBLE
#define NR_CPUS_POSSIBLE 64
#endif
#define NS_PER_TICK 10000000ULL /* 1e9 / USER_HZ (100) */

#ifndef MAX_PENDING_ROOTS
#define MAX_PENDING_ROOTS 1024
#endif
#ifndef MAX_REJECTED
#define MAX_REJECTED 16384
#endif
#ifndef CANDIDATES_PER_UID_PER_SEC
#define CANDIDATES_PER_UID_PER_SEC 20
#endif

/* Confirmed session roots, written only by the daemon. Roots the kernel adopts on its own go to
 * pending_root_map, a separate map: a flood of processes calling themselves "claude" can fill that one,
 * never the room kept for real sessions. */
BPF_HASH(target_pid_map, u32, struct root_info, MAX_ROOTS);
BPF_HASH(pending_root_map, u32, struct root_info, MAX_PENDING_ROOTS);
BPF_HASH(tracked_map, u32, struct tracked_proc, MAX_TRACKED);
/* Candidates the daemon rejected, tgid -> start ticks: not adopted again until they exec something new.
 * LRU: it can never be full, at worst an old rejection is forgotten and that process may trigger once more. */
BPF_TABLE("lru_hash", u32, u64, rejected_map, MAX_REJECTED);
/* Candidates adopted per uid in the current one-second window: a flood by one user is cut off in the
 * kernel, other users' sessions are still adopted at once. */
BPF_TABLE("lru_hash", u32, struct candidate_budget, candidate_budget, 1024);
/* comm values that make an untracked exec or rename a session candidate; filled by the daemon */
BPF_HASH(candidate_comms, struct comm_key, u8, 64);
BPF_PERCPU_ARRAY(counters, u64, COUNTER_MAX);
/* Set (to 1) the first time tracked_map is full at a fork; from then on an untracked exec whose parent
 * is tracked is taken back into its parent's session (recover_escaped). */
BPF_ARRAY(tracking_overflowed, u32, 1);
/* An exec record can be larger than the 512-byte BPF stack and the 32 KiB per-CPU value limit, so it is
 * built in a plain array slot per CPU. Tracepoint programs run with preemption disabled, so one slot
 * per CPU is never shared by two programs at once. */
BPF_ARRAY(exec_scratch, struct exec_event, NR_CPUS_POSSIBLE);
BPF_RINGBUF_OUTPUT(events, RING_PAGES);

/* Enforcement: rules the kernel evaluates itself at exec, for processes of confirmed sessions only.
 * Written only by the daemon (BPF maps are reachable by CAP_BPF/CAP_SYS_ADMIN only). Two generations
 * live side by side; enforce_state names the active one, so a reload switches every rule at once. */
#ifndef ENFORCE_CAN_KILL
#define ENFORCE_CAN_KILL 1 /* 0 when the kernel has no bpf_send_signal: the daemon then asks for dry-run */
#endif
BPF_ARRAY(enforce_state, u32, 1);
BPF_LPM_TRIE(deny_prefix, struct deny_prefix_key, struct deny_slots, 2 * ENFORCE_MAX_RULES);
BPF_HASH(deny_name, struct deny_name_key, struct deny_slots, 2 * ENFORCE_MAX_RULES);
BPF_ARRAY(deny_rules, struct deny_rule, 2 * ENFORCE_MAX_RULES);
struct deny_scratch {
    struct deny_prefix_key prefix;
    struct deny_name_key name;
    int name_start;
    int argv1;
    int word;
    u32 have;
    u64 orig;
    char path[DENY_PATH_SCAN];
    char argv[DENY_ARGV_SCAN + 8]; /* + 8: a word read at the last masked offset stays inside */
};
BPF_PERCPU_ARRAY(deny_scratch_map, struct deny_scratch, 1);

static __always_inline void count(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline u32 task_u32(void *task, unsigned long off) {
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

static __always_inline u64 task_u64(void *task, unsigned long off) {
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

static __always_inline void *task_ptr(void *task, unsigned long off) {
    void *v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

/* The process's start time: its thread-group leader's, since the calling thread may be any thread of
 * it (a runtime's worker thread forking, the last thread exiting). Same value as /proc/PID/stat field 22. */
static __always_inline u64 task_start_ticks(void *task) {
    void *leader = task_ptr(task, OFF_TASK_GROUP_LEADER);
    return task_u64(leader ? leader : task, OFF_TASK_START_BOOTTIME) / NS_PER_TICK;
}

#ifndef VIEW_PIDNS_INUM
#define VIEW_PIDNS_INUM 0 /* 0: the daemon runs in the initial pid namespace; pids are global */
#endif
#define MAX_PIDNS_LEVEL 8

/* A task's pid as seen from the daemon's pid namespace (what its /proc shows), 0 if not visible there.
 * Kernel hooks see global pids; a daemon in a container or a systemd namespace reads a /proc with other
 * numbers, so every pid it records or looks up is taken from the matching level of struct pid. */
static __always_inline u32 view_pid(void *task) {
#if VIEW_PIDNS_INUM == 0
    return task_u32(task, OFF_TASK_PID);
#else
    void *pid = task_ptr(task, OFF_TASK_THREAD_PID);
    if (!pid)
        return 0;
    u32 level = task_u32(pid, OFF_PID_LEVEL);
#pragma unroll
    for (int i = 0; i < MAX_PIDNS_LEVEL; i++) {
        if (i > level)
            break;
        char *upid = (char *)pid + OFF_PID_NUMBERS + i * SIZEOF_UPID;
        void *ns = task_ptr(upid, OFF_UPID_NS);
        if (ns && task_u32(ns, OFF_PIDNS_NS + OFF_NS_COMMON_INUM) == VIEW_PIDNS_INUM)
            return task_u32(upid, OFF_UPID_NR);
    }
    return 0;
#endif
}

/* The process id (tgid) of a task in the daemon's view: its thread-group leader's pid. */
static __always_inline u32 view_tgid(void *task) {
#if VIEW_PIDNS_INUM == 0
    return task_u32(task, OFF_TASK_TGID);
#else
    void *leader = task_ptr(task, OFF_TASK_GROUP_LEADER);
    return view_pid(leader ? leader : task);
#endif
}

static __always_inline u32 task_ppid(void *task) {
    void *parent = task_ptr(task, OFF_TASK_REAL_PARENT);
    return parent ? view_tgid(parent) : 0;
}

/* The session root entry for tgid, if it is a live root. A stale entry (the root died and its pid was
 * reused) is removed, so a new process with the same pid is never taken for the session. */
static __always_inline struct root_info *live_root(u32 tgid, u64 start_ticks) {
    struct root_info *r = target_pid_map.lookup(&tgid);
    if (r) {
        if (r->start_ticks == start_ticks)
            return r;
        target_pid_map.delete(&tgid);
        count(COUNTER_STALE_PID);
    }
    r = pending_root_map.lookup(&tgid);
    if (!r)
        return 0;
    if (r->start_ticks != start_ticks) {
        pending_root_map.delete(&tgid);
        count(COUNTER_STALE_PID);
        return 0;
    }
    return r;
}

static __always_inline struct tracked_proc *live_tracked(u32 tgid, u64 start_ticks) {
    struct tracked_proc *t = tracked_map.lookup(&tgid);
    if (!t)
        return 0;
    if (t->start_ticks != start_ticks) {
        tracked_map.delete(&tgid);
        count(COUNTER_STALE_PID);
        return 0;
    }
    return t;
}

/* A version-string comm ("2.1.199"): how ~/.local/share/claude/versions/<version> shows up. */
static __always_inline int comm_is_version(const char *comm) {
    int dots = 0, digits = 0;
#pragma unroll
    for (int i = 0; i < COMM_LEN; i++) {
        char c = comm[i];
        if (c == 0)
            break;
        if (c == '.')
            dots++;
        else if (c >= '0' && c <= '9')
            digits++;
        else
            return 0;
    }
    return dots >= 2 && digits >= 3;
}

static __always_inline int comm_is_candidate(const char *comm) {
    /* Only the bytes up to the NUL: prctl(PR_SET_NAME) copies the name into an uninitialised stack buffer
     * and task_rename's newcomm keeps whatever followed the NUL there, which would never match a key. */
    struct comm_key k = {};
    int ended = 0;
#pragma unroll
    for (int i = 0; i < COMM_LEN; i++) {
        if (comm[i] == 0)
            ended = 1;
        k.comm[i] = ended ? 0 : comm[i];
    }
    return candidate_comms.lookup(&k) != 0 || comm_is_version(comm);
}

/* New processes (not threads) inherit their parent's session; a child of the root starts an invocation. */
RAW_TRACEPOINT_PROBE(sched_process_fork) {
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    if (task_u32(child, OFF_TASK_TGID) == task_u32(parent, OFF_TASK_TGID))
        return 0; /* a new thread: its process is already tracked (or not) */
    u32 parent_tgid = view_tgid(parent);
    u32 child_tgid = view_tgid(child);
    if (!parent_tgid || !child_tgid)
        return 0; /* outside the daemon's pid namespace */

    u64 parent_start = task_start_ticks(parent);
    u64 child_start = task_start_ticks(child);
    struct tracked_proc entry = {};
    entry.start_ticks = child_start;

    struct root_info *r = live_root(parent_tgid, parent_start);
    if (r) {
        entry.root = parent_tgid;
        entry.root_start_ticks = r->start_ticks;
        entry.invocation = child_tgid;
        entry.invocation_start_ticks = child_start;
        entry.flags = r->flags & TRACK_PENDING_ROOT;
    } else {
        struct tracked_proc *p = live_tracked(parent_tgid, parent_start);
        if (!p)
            return 0;
        entry.root = p->root;
        entry.root_start_ticks = p->root_start_ticks;
        entry.invocation = p->invocation;
        entry.invocation_start_ticks = p->invocation_start_ticks;
        entry.flags = p->flags & TRACK_PENDING_ROOT;
    }
    if (tracked_map.update(&child_tgid, &entry) != 0) {
        count(COUNTER_TRACK_FULL);
        u32 zero = 0;
        u32 *over = tracking_overflowed.lookup(&zero);
        if (over)
            *over = 1;
    }
    return 0;
}

/* A full tracked_map fails towards recording more: a child whose fork could not be tracked is caught at
 * its exec while its real parent is still tracked. It is tracked now if there is room, and its exec is
 * reported for its parent's session either way (flag TRACK_RECOVERED). Only after an overflow, so the
 * normal exec path pays one array lookup. Returns 1 and fills *out if the exec belongs to a session. */
static __always_inline int recover_escaped(void *task, u32 tgid, u64 start_ticks, struct tracked_proc *out) {
    u32 zero = 0;
    u32 *over = tracking_overflowed.lookup(&zero);
    if (!over || !*over)
        return 0;
    void *parent = task_ptr(task, OFF_TASK_REAL_PARENT);
    if (!parent)
        return 0;
    u32 parent_tgid = view_tgid(parent);
    u64 parent_start = task_start_ticks(parent);
    if (!parent_tgid)
        return 0;
    out->start_ticks = start_ticks;
    struct root_info *r = live_root(parent_tgid, parent_start);
    if (r) {
        out->root = parent_tgid;
        out->root_start_ticks = r->start_ticks;
        out->invocation = tgid;
        out->invocation_start_ticks = start_ticks;
        out->flags = (r->flags & TRACK_PENDING_ROOT) | TRACK_RECOVERED;
    } else {
        struct tracked_proc *p = live_tracked(parent_tgid, parent_start);
        if (!p)
            return 0;
        out->root = p->root;
        out->root_start_ticks = p->root_start_ticks;
        out->invocation = p->invocation;
        out->invocation_start_ticks = p->invocation_start_ticks;
        out->flags = (p->flags & TRACK_PENDING_ROOT) | TRACK_RECOVERED;
    }
    if (tracked_map.update(&tgid, out) != 0)
        count(COUNTER_TRACK_FULL);
    return 1;
}

/* Reserve and fill a candidate record; the caller adds the filename (if any) and submits it. */
static __always_inline struct candidate_event *new_candidate(void *task, u32 tgid, u32 reason,
                                                             const char *comm) {
    struct candidate_event *c = events.ringbuf_reserve(sizeof(struct candidate_event));
    if (!c) {
        count(COUNTER_CANDIDATE_LOST);
        return 0;
    }
    c->type = EVENT_CANDIDATE;
    c->pid = tgid;
    c->ppid = task_ppid(task);
    c->reason = reason;
    c->boot_ns = bpf_ktime_get_boot_ns();
    c->start_ticks = task_start_ticks(task);
    __builtin_memcpy(c->comm, comm, COMM_LEN);
    c->filename[0] = 0;
    return c;
}

/* Adopt an untracked process that looks like Claude Code as a pending session root, in the kernel, so
 * the commands it runs in its first milliseconds are already tracked; the daemon then confirms it (or
 * removes it and drops its records) after checking /proc. */
static __always_inline int adopt_pending_root(u32 tgid, u64 start_ticks) {
    struct root_info r = {};
    r.start_ticks = start_ticks;
    r.flags = TRACK_PENDING_ROOT;
    if (pending_root_map.update(&tgid, &r) != 0) {
        count(COUNTER_ROOTS_FULL);
        return 0;
    }
    return 1;
}

/* Whether an untracked process may become a candidate now: not rejected already for this very process
 * (same start time; the exec probe forgets a rejection when the process runs a new program), and its
 * user within its per-second budget. */
static __always_inline int candidate_allowed(u32 tgid, u64 start_ticks) {
    u64 *rejected_start = rejected_map.lookup(&tgid);
    if (rejected_start && *rejected_start == start_ticks) {
        count(COUNTER_CANDIDATE_REJECTED_AGAIN);
        return 0;
    }
    u32 uid = (u32)bpf_get_current_uid_gid();
    u64 now = bpf_ktime_get_boot_ns();
    struct candidate_budget *b = candidate_budget.lookup(&uid);
    if (!b || now - b->window_start_ns >= 1000000000ULL) {
        struct candidate_budget fresh = {};
        fresh.window_start_ns = now;
        fresh.used = 1;
        candidate_budget.update(&uid, &fresh);
        return 1;
    }
    if (b->used >= CANDIDATES_PER_UID_PER_SEC) {
        count(COUNTER_CANDIDATE_THROTTLED);
        return 0;
    }
    __sync_fetch_and_add(&b->used, 1);
    return 1;
}

/* The scans below store their result in the scratch map instead of returning it: read back from a map it
 * is an unknown number to the verifier, so the exits of a 4096-step loop do not each become a state of
 * their own for the rest of the program (the verifier would give up long before). */

/* s->argv1: where argv[1] starts in the scratch copy of the argv area, or -1 if argv[0] does not end
 * within the first half of it (the caller then fails closed: a huge argv[0] must not hide the arguments).
 * Eight bytes per step (a word has a zero byte iff (v - 0x01..) & ~v & 0x80.. is not 0): a byte loop this
 * long leaves the verifier more pending branches than it accepts. */
static __always_inline void deny_find_argv1(struct deny_scratch *s) {
    s->argv1 = -1;
    s->word = -1;
    u32 have = s->have;
    for (int w = 0; w < DENY_ARGV_SCAN / 2 / 8; w++) {
        if (w * 8 >= have)
            break;
        u64 v = *(u64 *)(s->argv + w * 8);
        if ((v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL) {
            s->word = w;
            break;
        }
    }
    int w = s->word;
    if (w < 0)
        return;
    for (int b = 0; b < 8; b++) {
        u32 at = (w * 8 + b) & (DENY_ARGV_SCAN - 1);
        if (s->argv[at] == 0) {
            if (at < have)
                s->argv1 = at + 1;
            return;
        }
    }
}

/* s->name_start: where the path's last component starts (after the last '/'), searched from the end;
 * -1 when it is longer than any rule's name can be. */
static __always_inline void deny_find_name(struct deny_scratch *s, u32 len) {
    s->name_start = -1;
    for (int i = 1; i <= DENY_NAME_LEN; i++) {
        if (i > len) {
            s->name_start = 0;
            break;
        }
        if (s->path[(len - i) & (DENY_PATH_SCAN - 1)] == '/') {
            s->name_start = len - i + 1;
            break;
        }
    }
}

/* Whether argv[1..] starts with the rule's words (each compared with its NUL, so "--force" does not
 * match "--force-with-lease"), eight bytes at a time. Arguments beyond what was read count as matching
 * (fail closed). */
static __always_inline int deny_args_match(struct deny_scratch *s, struct deny_rule *rule) {
    u32 need = rule->args_len;
    if (need == 0)
        return 1;
    int argv1 = s->argv1;
    u32 have = s->have;
    if (argv1 < 0)
        return 1;
    if (argv1 + need > have)
        return s->orig > have; /* the area goes on beyond what was read: fail closed */
    for (int j = 0; j < DENY_ARGS_LEN / 8; j++) {
        if (j * 8 >= need)
            return 1;
        u64 mine = *(u64 *)(s->argv + ((argv1 + j * 8) & (DENY_ARGV_SCAN - 1)));
        u64 theirs = *(u64 *)(rule->args + j * 8);
        u32 rest = need - j * 8;
        u64 mask = rest >= 8 ? ~0ULL : (1ULL << (rest * 8)) - 1;
        if ((mine ^ theirs) & mask)
            return 0;
    }
    return 1;
}

static __always_inline int deny_rule_applies(struct deny_scratch *s, struct deny_rule *rule, u32 uid) {
    if (rule->nusers) {
        int mine = 0;
        for (int u = 0; u < DENY_USERS; u++) {
            if (u < rule->nusers && rule->users[u] == uid)
                mine = 1;
        }
        if (!mine)
            return 0;
    }
    return deny_args_match(s, rule);
}

/* Decide an exec of a tracked process against the deny rules. Only processes of a confirmed session
 * (its root in target_pid_map, not a kernel-adopted candidate the daemon has not checked yet): a rule
 * never touches a process outside Claude Code sessions. Returns the exec_event flags of the decision
 * (0: no rule matched, or enforcement off); in enforce mode the process is sent SIGKILL here, which it
 * takes on its way back to user space, before the new program's first instruction. */
static __always_inline u32 enforce_exec(void *task, const char *filename, u32 root, u64 root_start) {
    u32 zero = 0;
    u32 *state = enforce_state.lookup(&zero);
    if (!state)
        return 0;
    u32 word = *state;
    u32 mode = word & ((1 << ENFORCE_GENERATION_SHIFT) - 1);
    u32 generation = (word >> ENFORCE_GENERATION_SHIFT) & 1;
    if (mode == ENFORCE_OFF)
        return 0;
    struct root_info *ri = target_pid_map.lookup(&root);
    if (!ri || ri->start_ticks != root_start)
        return 0;
    struct deny_scratch *s = deny_scratch_map.lookup(&zero);
    if (!s)
        return 0;
    u32 uid = (u32)bpf_get_current_uid_gid();

    int n = bpf_probe_read_kernel_str(s->path, DENY_PATH_SCAN, filename);
    if (n <= 0)
        return 0;
    u32 len = n - 1; /* without the NUL */

    /* the argv area, for rules with arguments, from the new program's own memory. Read before the
     * lookups so the verifier walks its scan once, not once per combination of lookup results. */
    void *mm = task_ptr(task, OFF_TASK_MM);
    u64 arg_start = mm ? task_u64(mm, OFF_MM_ARG_START) : 0;
    u64 arg_end = mm ? task_u64(mm, OFF_MM_ARG_END) : 0;
    u64 orig = arg_end > arg_start ? arg_end - arg_start : 0;
    u32 have = orig > DENY_ARGV_SCAN ? DENY_ARGV_SCAN : (u32)orig;
    if (have > DENY_ARGV_SCAN)
        have = DENY_ARGV_SCAN; /* restated for the verifier */
    if (have == 0 || bpf_probe_read_user(s->argv, have, (void *)arg_start) != 0)
        have = 0;
    s->have = have;
    s->orig = orig;
    deny_find_argv1(s);


    /* by program name: the path's last component (longer names than a rule can hold match nothing) */
    struct deny_slots *by_name = 0;
    s->name.generation = generation;
    deny_find_name(s, len);
    int start = s->name_start;
    if (start >= 0) {
        u32 name_len = len - start;
        if (name_len > 0 && name_len < DENY_NAME_LEN) {
            /* a fixed-size copy (a variable size gives the verifier an unbounded range), then the
             * bytes after the name cleared: a hash key is compared whole */
            bpf_probe_read_kernel(s->name.name, DENY_NAME_LEN, s->path + (start & (DENY_PATH_SCAN - 1)));
#pragma unroll
            for (int j = 0; j < DENY_NAME_LEN; j++) {
                if (j >= name_len)
                    s->name.name[j] = 0;
            }
            by_name = deny_name.lookup(&s->name);
        }
    }

    /* by path, exact or prefix: the longest stored prefix of generation byte + path (+ its NUL) */
    /* bytes past prefixlen (stale ones from an earlier exec included) take no part in an LPM lookup */
    u32 plen = len + 1 > DENY_PATH_KEY_LEN ? DENY_PATH_KEY_LEN : len + 1;
    s->prefix.generation = generation;
    bpf_probe_read_kernel(s->prefix.path, DENY_PATH_KEY_LEN, s->path);
    s->prefix.prefixlen = 8 * (1 + plen);
    struct deny_slots *by_path = deny_prefix.lookup(&s->prefix);
    /* Two separate tests with a compiler barrier between: clang 19 (Debian 13) folds `!a && !b` on two
     * map-value pointers into `(a | b) == 0`, pointer arithmetic the verifier refuses. */
    if (!by_name) {
        asm volatile("" ::: "memory");
        if (!by_path)
            return 0;
    }

    int rule = -1;
    for (int w = 0; w < 2 && rule < 0; w++) {
        struct deny_slots *slots = w == 0 ? by_name : by_path;
        if (!slots)
            continue;
        for (int k = 0; k < DENY_SLOTS; k++) {
            if (k >= slots->count)
                break;
            u32 index = slots->rules[k] & (ENFORCE_MAX_RULES - 1);
            u32 key = generation * ENFORCE_MAX_RULES + index;
            struct deny_rule *r = deny_rules.lookup(&key);
            if (r && deny_rule_applies(s, r, uid)) {
                rule = index;
                break;
            }
        }
    }
    if (rule < 0)
        return 0;
    u32 flags = ((generation << 8 | (u32)rule) & EXEC_DENY_RULE_MASK) << EXEC_DENY_RULE_SHIFT;
#if ENFORCE_CAN_KILL
    if (mode == ENFORCE_KILL) {
        bpf_send_signal(9); /* SIGKILL */
        count(COUNTER_DENIED);
        return flags | EXEC_DENIED;
    }
#endif
    count(COUNTER_WOULD_DENY);
    return flags | EXEC_WOULD_DENY;
}

/* TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm); p is current. */
RAW_TRACEPOINT_PROBE(sched_process_exec) {
    void *task = (void *)ctx->args[0];
    const char *filename = task_ptr((void *)ctx->args[2], OFF_BPRM_FILENAME);
    u32 tgid = view_tgid(task);
    if (!tgid)
        return 0; /* outside the daemon's pid namespace */
    u64 start_ticks = task_start_ticks(task);

    u32 root = 0, invocation = 0, flags = 0;
    u64 root_start = 0, invocation_start = 0;
    struct tracked_proc recovered = {};
    struct root_info *r = live_root(tgid, start_ticks);
    if (r) {
        root = tgid;
        root_start = r->start_ticks;
        flags = (r->flags & TRACK_PENDING_ROOT) | EXEC_IS_ROOT;
    } else {
        struct tracked_proc *t = live_tracked(tgid, start_ticks);
        if (t) {
            root = t->root;
            root_start = t->root_start_ticks;
            invocation = t->invocation;
            invocation_start = t->invocation_start_ticks;
            flags = t->flags & (TRACK_PENDING_ROOT | TRACK_SEEDED);
        } else if (recover_escaped(task, tgid, start_ticks, &recovered)) {
            root = recovered.root;
            root_start = recovered.root_start_ticks;
            invocation = recovered.invocation;
            invocation_start = recovered.invocation_start_ticks;
            flags = recovered.flags;
        } else {
            rejected_map.delete(&tgid); /* a new program: a rejected process is judged anew */
            char comm[COMM_LEN] = {};
            bpf_get_current_comm(comm, sizeof(comm));
            if (!comm_is_candidate(comm) || !candidate_allowed(tgid, start_ticks) ||
                !adopt_pending_root(tgid, start_ticks))
                return 0;
            struct candidate_event *c = new_candidate(task, tgid, CANDIDATE_EXEC, comm);
            if (c) {
                bpf_probe_read_kernel_str(c->filename, sizeof(c->filename), filename);
                events.ringbuf_submit(c, 0);
            }
            root = tgid;
            root_start = start_ticks;
            flags = TRACK_PENDING_ROOT | EXEC_IS_ROOT;
        }
    }

    u32 cpu = bpf_get_smp_processor_id();
    struct exec_event *e = exec_scratch.lookup(&cpu);
    if (!e) {
        count(COUNTER_RING_LOST);
        return 0;
    }
    e->type = EVENT_EXEC;
    e->pid = tgid;
    e->tid = view_pid(task);
    e->ppid = task_ppid(task);
    u64 uid_gid = bpf_get_current_uid_gid();
    e->uid = (u32)uid_gid;
    e->gid = uid_gid >> 32;
    e->root = root;
    e->invocation = invocation;
    e->boot_ns = bpf_ktime_get_boot_ns();
    e->start_ticks = start_ticks;
    e->root_start_ticks = root_start;
    e->invocation_start_ticks = invocation_start;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    /* The exec has committed its credentials by now (begin_new_exec), so task->cred is what the new
     * program runs with; a setuid or file-capability exec shows here, not in uid/gid. */
    void *cred = task_ptr(task, OFF_TASK_CRED);
    e->euid = cred ? task_u32(cred, OFF_CRED_EUID) : e->uid;
    e->egid = cred ? task_u32(cred, OFF_CRED_EGID) : e->gid;
    e->suid = cred ? task_u32(cred, OFF_CRED_SUID) : e->uid;
    e->sgid = cred ? task_u32(cred, OFF_CRED_SGID) : e->gid;
    e->cap_effective = cred ? task_u64(cred, OFF_CRED_CAP_EFFECTIVE) : 0;
    void *parent = task_ptr(task, OFF_TASK_REAL_PARENT);
    e->parent_start_ticks = parent ? task_start_ticks(parent) : 0;

    int n = bpf_probe_read_kernel_str(e->data, FILENAME_MAX_LEN, filename);
    u32 fname_len = 0;
    if (n > 0) {
        fname_len = n - 1; /* without the NUL */
        if (n >= FILENAME_MAX_LEN)
            flags |= EXEC_FILENAME_TRUNCATED;
    }
    fname_len &= (FILENAME_MAX_LEN - 1);
    e->filename_len = fname_len;

    void *mm = task_ptr(task, OFF_TASK_MM);
    u64 arg_start = mm ? task_u64(mm, OFF_MM_ARG_START) : 0;
    u64 arg_end = mm ? task_u64(mm, OFF_MM_ARG_END) : 0;
    u64 orig = arg_end > arg_start ? arg_end - arg_start : 0;
    u64 len = orig;
    if (len > ARGS_MAX) {
        len = ARGS_MAX;
        flags |= EXEC_ARGS_TRUNCATED;
    }
    e->args_orig_len = orig;
    if (len > 0 && bpf_probe_read_user(e->data + fname_len, len, (void *)arg_start) != 0) {
        len = 0;
        flags |= EXEC_ARGS_UNREADABLE;
    }
    e->args_len = len;
    e->flags = flags;

    /* Enforcement last, with every record field already in the map value: what it reads back from
     * there is the same unknown to the verifier whichever way (root, tracked, recovered) led here, so
     * its loops are verified once instead of once per way. */
    u32 deny = (e->flags & TRACK_PENDING_ROOT) ? 0 : enforce_exec(task, filename, e->root, e->root_start_ticks);
    e->flags |= deny;

    u64 size = __builtin_offsetof(struct exec_event, data) + e->filename_len + e->args_len;
    if (size > sizeof(struct exec_event))
        size = sizeof(struct exec_event);
    /* Adaptive notification (flags 0): the kernel wakes the reader only when this record is the first
     * the reader has not taken, i.e. the ring was empty. An idle daemon then sleeps until a record
     * arrives; while records flow it takes the ring in batches every poll interval without waiting on
     * it, so the wake-ups the batches' first records make find nobody waiting (see Daemon.collect).
     * bpf_ringbuf_query could wake it past a fill threshold too, but BCC 0.26 gives no map pointer to
     * pass it, and a 16 MiB ring read every 20 ms cannot fill.
     * A deny decision forces the wake-up: its alert is written at once, not at the next batch. */
    if (events.ringbuf_output(e, size, deny ? BPF_RB_FORCE_WAKEUP : 0) != 0) {
        count(COUNTER_RING_LOST);
        if (deny)
            count(COUNTER_DENY_RECORD_LOST);
    } else
        count(COUNTER_EXECS_SEEN);
    return 0;
}

/* A node-based Claude Code (<= 2.0.x) becomes "claude" by renaming itself (process.title).
 * TP_PROTO(struct task_struct *task, const char *comm), before the new comm is copied in. The task is
 * not always current: writing /proc/PID/task/TID/comm renames another thread of the writer's process. */
RAW_TRACEPOINT_PROBE(task_rename) {
    void *task = (void *)ctx->args[0];
    if (task_u32(task, OFF_TASK_PID) != task_u32(task, OFF_TASK_TGID))
        return 0; /* a thread other than the leader was renamed; only the process's name counts */
    u32 tgid = view_tgid(task);
    if (!tgid)
        return 0;
    u64 start_ticks = task_start_ticks(task);
    if (live_root(tgid, start_ticks) || live_tracked(tgid, start_ticks))
        return 0; /* already watched: a descendant renaming itself stays in its session */
    char comm[COMM_LEN] = {};
    /* a string (exec passes the path's basename, which may be shorter than COMM_LEN); the kernel
     * keeps its first COMM_LEN - 1 bytes, and so does this read */
    bpf_probe_read_kernel_str(comm, sizeof(comm), (const char *)ctx->args[1]);
    if (!comm_is_candidate(comm) || !candidate_allowed(tgid, start_ticks) ||
        !adopt_pending_root(tgid, start_ticks))
        return 0;
    struct candidate_event *c = new_candidate(task, tgid, CANDIDATE_RENAME, comm);
    if (c)
        events.ringbuf_submit(c, 0);
    return 0;
}

/* Whether the exiting thread ends its process. do_exit() decrements signal->live before the tracepoint,
 * and since 2025 passes the result as a second argument (TP_PROTO(struct task_struct *p, bool
 * group_dead)); the daemon finds out which from the kernel's BTF. On older kernels live == 0 is read
 * instead: two last threads exiting at once can both see 0, so the caller must tolerate a second call
 * for the same process (it does: only the one that removes the root's entry reports). */
static __always_inline int exit_ends_process(struct bpf_raw_tracepoint_args *ctx, void *task) {
#if EXIT_TP_HAS_GROUP_DEAD
    return (u8)ctx->args[1] != 0;
#else
    void *signal = task_ptr(task, OFF_TASK_SIGNAL);
    return signal && task_u32(signal, OFF_SIGNAL_LIVE) == 0;
#endif
}

/* TP_PROTO(struct task_struct *p[, bool group_dead]); p is current, once per exiting thread. */
RAW_TRACEPOINT_PROBE(sched_process_exit) {
    void *task = (void *)ctx->args[0];
    if (!exit_ends_process(ctx, task))
        return 0; /* other threads of the process live on */
    u32 tgid = view_tgid(task);
    if (!tgid)
        return 0;
    u64 start_ticks = task_start_ticks(task);
    struct root_info *r = live_root(tgid, start_ticks);
    /* Removing the entry decides who reports: of two threads racing here, one delete succeeds. A root
     * is in one of the two maps (confirmed or pending), so at most one of the deletes can succeed. */
    if (r && (target_pid_map.delete(&tgid) == 0 || pending_root_map.delete(&tgid) == 0)) {
        struct exit_event *x = events.ringbuf_reserve(sizeof(struct exit_event));
        if (x) {
            x->type = EVENT_EXIT;
            x->pid = tgid;
            x->root = tgid;
            x->exit_code = task_u32(task, OFF_TASK_EXIT_CODE);
            x->boot_ns = bpf_ktime_get_boot_ns();
            x->start_ticks = start_ticks;
            events.ringbuf_submit(x, 0);
        } else {
            count(COUNTER_RING_LOST);
        }
    }
    tracked_map.delete(&tgid);
    return 0;
}
