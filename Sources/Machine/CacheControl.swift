import CCPUFeatures

/// Cache maintenance for cold timing.
public enum CacheControl {
    /// Writes back and invalidates every cache line of `region` on every core (x86 `clflush`,
    /// aarch64 `dc civac`). False where the architecture has no such instruction.
    @discardableResult
    public static func flush(_ region: UnsafeRawBufferPointer) -> Bool {
        guard let base = region.baseAddress, region.count > 0 else { return true }
        return lowbit_flush_cache_lines(base, UInt64(region.count)) != 0
    }
}
