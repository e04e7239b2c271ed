import Glibc

/// A page-aligned buffer fenced by inaccessible pages, for running untrusted kernels on.
///
/// Layout (low to high addresses):
///
///     [guard page, PROT_NONE][front canary >= 64 bytes][usable bytes][tail slack][guard page, PROT_NONE]
///
/// The usable region ends exactly at the upper guard page (the tail slack is empty) when
/// `alignment` divides the byte count, so a write one byte past the end faults with SIGSEGV (in the
/// worker). With a larger alignment the slack is under `alignment` bytes. The front canary and the
/// tail slack hold a known byte pattern: `canariesIntact()` detects writes just before the start or
/// into the slack, and the lower guard page catches anything further below.
///
/// The memory comes from `mmap` and is returned with `munmap` when the buffer goes away. Access from
/// several threads is the caller's business (kernels write disjoint parts), hence
/// `@unchecked Sendable`.
public final class GuardedBuffer: @unchecked Sendable {
    /// The first usable byte; aligned to `alignment`.
    public let pointer: UnsafeMutableRawPointer
    /// The number of usable bytes.
    public let byteCount: Int
    public let alignment: Int

    private let base: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let frontCanary: UnsafeMutableRawBufferPointer
    private let tailSlack: UnsafeMutableRawBufferPointer

    /// The smallest front canary.
    public static let minimumCanaryBytes = 64
    /// A quiet float NaN with a recognisable payload, for `poison(with:)` of float buffers: a kernel
    /// that reads memory it should have written propagates NaN into the result.
    public static let float32Poison = Float(bitPattern: 0x7FC0_DEAD)
    public static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Allocates `byteCount` usable bytes whose start is aligned to `alignment` (a power of two, at
    /// most a page). Filled with zeros.
    public init(byteCount: Int, alignment: Int = 1) throws {
        let page = Self.pageSize
        precondition(byteCount >= 0, "negative byte count")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0 && alignment <= page,
                     "alignment must be a power of two no larger than a page")
        let slackMax = alignment - 1
        let dataBytes = Self.roundUp(Self.minimumCanaryBytes + slackMax + byteCount, to: page)
        let total = dataBytes + 2 * page
        guard let mapped = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            mapped != UnsafeMutableRawPointer(bitPattern: -1)
        else {
            throw GuardedBufferError(call: "mmap", bytes: total, code: errno)
        }
        guard mprotect(mapped, page, PROT_NONE) == 0, mprotect(mapped + page + dataBytes, page, PROT_NONE) == 0 else {
            let code = errno
            munmap(mapped, total)
            throw GuardedBufferError(call: "mprotect", bytes: page, code: code)
        }
        let dataStart = mapped + page
        let dataEnd = dataStart + dataBytes
        let start = UnsafeMutableRawPointer(bitPattern: Int(bitPattern: dataEnd - byteCount) & ~(alignment - 1))!
        base = mapped
        mappedBytes = total
        pointer = start
        self.byteCount = byteCount
        self.alignment = alignment
        frontCanary = UnsafeMutableRawBufferPointer(start: dataStart, count: start - dataStart)
        tailSlack = UnsafeMutableRawBufferPointer(start: start + byteCount, count: dataEnd - (start + byteCount))
        Self.writePattern(frontCanary)
        Self.writePattern(tailSlack)
    }

    /// Allocates room for `count` values of `type`, aligned for it (or more, with `alignment`).
    public convenience init<T: BitwiseCopyable>(count: Int, of type: T.Type, alignment: Int? = nil) throws {
        try self.init(
            byteCount: count * MemoryLayout<T>.stride,
            alignment: max(alignment ?? MemoryLayout<T>.alignment, MemoryLayout<T>.alignment))
    }

    deinit {
        munmap(base, mappedBytes)
    }

    /// The usable bytes.
    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: byteCount) }

    /// The usable region viewed as `T` values (the remainder of a partial last value is left out).
    public func buffer<T: BitwiseCopyable>(of type: T.Type) -> UnsafeMutableBufferPointer<T> {
        precondition(Int(bitPattern: pointer) % MemoryLayout<T>.alignment == 0, "buffer is not aligned for \(T.self)")
        return UnsafeMutableBufferPointer(
            start: pointer.bindMemory(to: T.self, capacity: byteCount / MemoryLayout<T>.stride),
            count: byteCount / MemoryLayout<T>.stride)
    }

    /// Copies `values` to the start of the usable region.
    public func copy<T: BitwiseCopyable>(from values: [T]) {
        precondition(values.count * MemoryLayout<T>.stride <= byteCount, "\(values.count) values do not fit")
        values.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    /// The usable region as an array of `T`.
    public func array<T: BitwiseCopyable>(of type: T.Type) -> [T] { Array(buffer(of: type)) }

    /// Fills the usable region with repeated copies of `value`'s bytes (e.g. `float32Poison`), so a
    /// kernel that leaves part of its output unwritten is caught by the comparison with the reference.
    public func poison<T: BitwiseCopyable>(with value: T) {
        let size = MemoryLayout<T>.size
        withUnsafeBytes(of: value) { pattern in
            var offset = 0
            while offset < byteCount {
                let n = min(size, byteCount - offset)
                (pointer + offset).copyMemory(from: pattern.baseAddress!, byteCount: n)
                offset += n
            }
        }
    }

    /// True when the front canary and the tail slack still hold their pattern: nothing wrote just
    /// before the start or just past the end of the usable region.
    public func canariesIntact() -> Bool {
        Self.holdsPattern(frontCanary) && Self.holdsPattern(tailSlack)
    }

    /// Puts the canary pattern back, e.g. after a damaged canary was reported.
    public func resetCanaries() {
        Self.writePattern(frontCanary)
        Self.writePattern(tailSlack)
    }

    // MARK: Helpers

    /// A byte pattern that depends on the address, so a shifted copy of it does not pass for intact.
    private static func patternByte(at address: UnsafeMutableRawPointer) -> UInt8 {
        let a = UInt(bitPattern: Int(bitPattern: address))
        return UInt8(truncatingIfNeeded: (a &* 0x9E37_79B9) >> 13) ^ 0xA5
    }

    private static func writePattern(_ region: UnsafeMutableRawBufferPointer) {
        guard let start = region.baseAddress else { return }
        for i in 0..<region.count { region[i] = patternByte(at: start + i) }
    }

    private static func holdsPattern(_ region: UnsafeMutableRawBufferPointer) -> Bool {
        guard let start = region.baseAddress else { return true }
        for i in 0..<region.count where region[i] != patternByte(at: start + i) { return false }
        return true
    }

    private static func roundUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
}

/// `mmap` or `mprotect` failed while creating a `GuardedBuffer`.
public struct GuardedBufferError: Error, CustomStringConvertible, Sendable {
    public var call: String
    public var bytes: Int
    public var code: Int32
    public var description: String {
        "\(call) of \(bytes) bytes for a guarded buffer failed: \(String(cString: strerror(code))) (errno \(code))"
    }
}
