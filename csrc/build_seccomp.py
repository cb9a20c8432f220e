"""cffi builder for nspod._seccomp: the parts of libseccomp nspod uses to compile filters.

Only `nspod.seccomp` imports it, and only when a filter is not yet compiled
(create, or a join with a new capability set or profile): a join that finds
its filter compiled never loads libseccomp.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef void *scmp_filter_ctx;
    typedef uint64_t scmp_datum_t;
    struct scmp_arg_cmp {
        unsigned int arg;
        int op;
        scmp_datum_t datum_a;
        scmp_datum_t datum_b;
    };
    struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };

    scmp_filter_ctx seccomp_init(uint32_t def_action);
    void seccomp_release(scmp_filter_ctx ctx);
    uint32_t seccomp_arch_resolve_name(const char *arch_name);
    uint32_t seccomp_arch_native(void);
    int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
    int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
    int seccomp_syscall_resolve_name(const char *name);
    int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                               unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
    int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
    const struct scmp_version *seccomp_version(void);
    """
)
ffibuilder.set_source(
    "nspod._seccomp",
    """
    #include <seccomp.h>
    """,
    libraries=["seccomp"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
