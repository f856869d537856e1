//! The CRC-32 that names a relay's socket and store after its URL, and checks records of
//! the old `spool.log` format.

/// The CRC-32 (IEEE) of `bytes`, from a table built at compile time. `crc32fast` asks the
/// CPU for its features first; under a hypervisor that query traps, and it took 67 µs of
/// the hook's start, for the hash of a URL.
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC32.checksum(bytes)
}
