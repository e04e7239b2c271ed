import Foundation

/// How much memory the host can give a process now: Linux's `MemAvailable` (free memory plus the page
/// cache and other memory the kernel can reclaim without swapping), for refusing work that would not fit
/// before it is started and killed halfway.
public enum HostMemory {
    /// `MemAvailable` in bytes, or nil where /proc/meminfo cannot be read or lacks it.
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        return availableBytes(meminfo: text)
    }

    /// The `MemAvailable:` line of a /proc/meminfo text ("MemAvailable:   24074012 kB"), in bytes.
    public static func availableBytes(meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let value = Int(fields[1]) else { return nil }
            let unit = fields.count >= 3 ? fields[2].lowercased() : "kb"
            guard unit == "kb" else { return nil }
            return value * 1024
        }
        return nil
    }
}
