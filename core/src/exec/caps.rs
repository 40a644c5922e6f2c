//! The kernel's capability structures for `capget`/`capset` (linux/capability.h, version 3:
//! two 32-bit words per set), shared by the host probe and the spawn's child.

/// `_LINUX_CAPABILITY_VERSION_3`.
pub(crate) const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
pub(crate) struct CapHeader {
    pub(crate) version: u32,
    pub(crate) pid: i32,
}

/// `struct __user_cap_data_struct`: one word of each set (version 3 takes two of them).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CapData {
    pub(crate) effective: u32,
    pub(crate) permitted: u32,
    pub(crate) inheritable: u32,
}

impl CapHeader {
    /// A version 3 header for this process.
    pub(crate) fn this_process() -> CapHeader {
        CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        }
    }
}
