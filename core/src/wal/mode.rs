//! File modes of the log: its directory and files are the owner's alone.

/// Mode of the log directory: logged arguments and output are the owner's alone.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of segments, the lock and the identity file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
