/* Structures shared by the BPF program and userspace.
 *
 * Mirrored in Python by daemon/claude_audit/bpf_layout.py (and only there); tests/unit/test_bpf_layout.py
 * compiles this header with the host C compiler and checks that every offset and size agrees.
 * Fixed-width types only, explicit padding, so the layout is the same for BPF and x86-64. */
#ifndef CLAUDE_AUDIT_H
#define CLAUDE_AUDIT_H

#ifndef ARGS_MAX
#define ARGS_MAX 16384 /* bytes of argv captured per exec; a power of two; set from config by -D */
#endif
#ifndef FILENAME_MAX_LEN
#define FILENAME_MAX_LEN 4096 /* bytes of the exec'd path captured; a power of two; set from config */
#endif
#define COMM_LEN 16

/* event types: the first u32 of every ring-buffer record */
#define EVENT_EXEC 1
#define EVENT_CANDIDATE 2
#define EVENT_EXIT 3

/* tracked_proc.flags and exec_event.flags */
#define TRACK_PENDING_ROOT 0x1  /* root adopted by the kernel from a trigger, not yet confirmed */
#define TRACK_SEEDED 0x2        /* entry seeded by userspace from /proc, not seen forking */
#define TRACK_RECOVERED 0x4     /* fork not tracked (map full), taken back at exec from its tracked parent */
#define EXEC_ARGS_TRUNCATED 0x100
#define EXEC_FILENAME_TRUNCATED 0x200
#define EXEC_ARGS_UNREADABLE 0x400 /* bpf_probe_read_user of the argv area failed */
#define EXEC_IS_ROOT 0x800         /* the exec'ing process is itself a session root */

/* Enforcement (docs/ENFORCE.md). exec_event.flags carries the decision, and bits 16-24 the rule that
 * made it: its index (bits 16-23) in the rule generation (bit 24) that was active. */
#define EXEC_WOULD_DENY 0x1000
#define EXEC_DENIED 0x2000
#define EXEC_DENY_RULE_SHIFT 16
#define EXEC_DENY_RULE_MASK 0x1ff

#define ENFORCE_OFF 0
#define ENFORCE_DRY_RUN 1
#define ENFORCE_KILL 2
/* enforce_state[0] = mode | generation << ENFORCE_GENERATION_SHIFT: one word, so a switch is atomic */
#define ENFORCE_GENERATION_SHIFT 4
#define ENFORCE_MAX_RULES 256  /* per generation; deny_rules holds two generations */
#define DENY_PATH_KEY_LEN 255  /* LPM data is at most 256 bytes: the generation byte, then the path */
#define DENY_NAME_LEN 64
#define DENY_ARGS_LEN 256
#define DENY_SLOTS 16
#define DENY_USERS 8
#define DENY_PATH_SCAN 4096    /* PATH_MAX: the whole exec path is read for the basename */
#define DENY_ARGV_SCAN 4096    /* argv bytes read for args rules; argv[0] longer than half of it fails closed */

/* candidate_event.reason */
#define CANDIDATE_EXEC 1
#define CANDIDATE_RENAME 2

/* counters (per-CPU array indices) */
#define COUNTER_RING_LOST 0      /* ring buffer full: an exec/exit record was dropped */
#define COUNTER_TRACK_FULL 1     /* tracked map full: a descendant could not be tracked */
#define COUNTER_CANDIDATE_LOST 2 /* ring buffer full: a session trigger was dropped */
#define COUNTER_STALE_PID 3      /* a map entry whose start time no longer matched (pid reused) */
#define COUNTER_EXECS_SEEN 4     /* exec events emitted */
#define COUNTER_ROOTS_FULL 5     /* pending_root_map full: a session trigger was not adopted */
#define COUNTER_CANDIDATE_THROTTLED 6 /* a uid's candidates over its per-second budget: not adopted */
#define COUNTER_CANDIDATE_REJECTED_AGAIN 7 /* a rejected process renamed again: ignored */
#define COUNTER_DENIED 8           /* execs killed by a deny rule */
#define COUNTER_WOULD_DENY 9       /* execs a deny rule matched in dry-run */
#define COUNTER_DENY_RECORD_LOST 10 /* ring buffer full: the record of a denied/would-deny exec was dropped */
#define COUNTER_MAX 11

/* value of target_pid_map: one per Claude Code session root, key = root tgid */
struct root_info {
    __u64 start_ticks; /* root's start time in USER_HZ ticks, as field 22 of /proc/PID/stat */
    __u32 flags;
    __u32 _pad;
};

/* value of tracked_map: every descendant of a session root, key = tgid */
struct tracked_proc {
    __u64 start_ticks;            /* this process's start time (pid-reuse guard) */
    __u64 root_start_ticks;
    __u64 invocation_start_ticks;
    __u32 root;                   /* session root tgid */
    __u32 invocation;             /* tgid of the root's direct child this process descends from */
    __u32 flags;
    __u32 _pad;
};

/* value of candidate_budget: candidates adopted for one uid in the window starting at window_start_ns */
struct candidate_budget {
    __u64 window_start_ns;
    __u32 used;
    __u32 _pad;
};

/* key of candidate_comms: comm values that make an untracked exec or rename a session candidate */
struct comm_key {
    char comm[COMM_LEN];
};

/* key of deny_prefix (an LPM trie): prefixlen counts bits of generation + path. An exact-path rule is
 * stored with the path's NUL, so it matches only the whole path; a prefix rule without it. */
struct deny_prefix_key {
    __u32 prefixlen;
    __u8 generation;
    char path[DENY_PATH_KEY_LEN];
};

/* key of deny_name: an exec path's last component */
struct deny_name_key {
    char name[DENY_NAME_LEN];
    __u32 generation;
};

/* value of deny_prefix and deny_name: the rules to check, as indexes into the generation's rules */
struct deny_slots {
    __u32 count;
    __u32 rules[DENY_SLOTS];
};

/* value of deny_rules, index generation * ENFORCE_MAX_RULES + rule */
struct deny_rule {
    __u32 args_len;  /* bytes of args: the leading arguments, each followed by its NUL; 0 for none */
    __u32 nusers;    /* 0: every user */
    __u32 users[DENY_USERS];
    char args[DENY_ARGS_LEN];
};

struct exec_event {
    __u32 type; /* EVENT_EXEC */
    __u32 pid;  /* tgid */
    __u32 tid;
    __u32 ppid; /* real_parent->tgid */
    __u32 uid;
    __u32 gid;
    __u32 root;
    __u32 invocation;
    __u64 boot_ns; /* bpf_ktime_get_boot_ns() at the exec */
    __u64 start_ticks;
    __u64 root_start_ticks;
    __u64 invocation_start_ticks;
    __u64 cgroup_id;
    __u32 flags;
    __u32 filename_len;  /* bytes of data[] holding the path, without NUL */
    __u32 args_len;      /* bytes of data[] after the path holding argv (NUL-separated) */
    __u32 args_orig_len; /* mm->arg_end - mm->arg_start */
    char comm[COMM_LEN];
    /* The credentials the exec committed (task->cred): uid/gid above are the real ids; these the
     * effective and saved ones (a setuid exec differs here) and the effective capability set. */
    __u32 euid;
    __u32 egid;
    __u32 suid;
    __u32 sgid;
    __u64 cap_effective;
    __u64 parent_start_ticks; /* real_parent's start time: with ppid, the parent's entity id */
    char data[FILENAME_MAX_LEN + ARGS_MAX]; /* path, then argv; only the used part is sent */
};

struct candidate_event {
    __u32 type; /* EVENT_CANDIDATE */
    __u32 pid;
    __u32 ppid;
    __u32 reason;
    __u64 boot_ns;
    __u64 start_ticks;
    char comm[COMM_LEN];
    char filename[256];
};

struct exit_event {
    __u32 type; /* EVENT_EXIT */
    __u32 pid;
    __u32 root;
    __u32 exit_code; /* task->exit_code (wait status) */
    __u64 boot_ns;
    __u64 start_ticks;
};

#endif
