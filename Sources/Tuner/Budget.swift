import Foundation
import Synchronization

/// Limits every strategy honours: trials, wall time, and trials without improvement.
public struct Budget: Sendable, CustomStringConvertible {
    public var maxTrials: Int?
    public var maxTime: Duration?
    /// Stop after this many consecutive measured trials that did not improve the best.
    public var patience: Int?

    public init(maxTrials: Int? = nil, maxTime: Duration? = nil, patience: Int? = nil) {
        self.maxTrials = maxTrials
        self.maxTime = maxTime
        self.patience = patience
    }

    public var description: String {
        var parts: [String] = []
        if let maxTrials { parts.append("\(maxTrials) trials") }
        if let maxTime { parts.append("\(Self.format(maxTime))") }
        if let patience { parts.append("stop after \(patience) without improvement") }
        return parts.isEmpty ? "unlimited" : parts.joined(separator: ", ")
    }

    public static func format(_ d: Duration) -> String {
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        return s >= 60 ? String(format: "%.0fm%02.0fs", (s / 60).rounded(.down), s.truncatingRemainder(dividingBy: 60)) : String(format: "%.1fs", s)
    }

    /// Parses "90", "90s", "5m", "1h30m" into a duration.
    public static func parseDuration(_ text: String) -> Duration? {
        if let seconds = Double(text) { return .milliseconds(Int(seconds * 1000)) }
        var total = 0.0, number = ""
        for ch in text {
            if ch.isNumber || ch == "." {
                number.append(ch)
                continue
            }
            guard let v = Double(number) else { return nil }
            switch ch {
            case "h": total += v * 3600
            case "m": total += v * 60
            case "s": total += v
            default: return nil
            }
            number = ""
        }
        guard number.isEmpty, total > 0 else { return nil }
        return .milliseconds(Int(total * 1000))
    }
}

/// Why a tuning run stopped.
public enum StopReason: String, Sendable, Codable {
    case trials = "trial budget reached"
    case time = "time budget reached"
    case patience = "no improvement within the patience"
    case exhausted = "search space exhausted"
    case interrupted = "interrupted"
}

/// Ctrl-C: the first one asks the tuner to stop after the trial in flight; a second one ends the
/// process as usual.
public enum Interrupt {
    private static let flag = Atomic<Bool>(false)

    public static var requested: Bool { flag.load(ordering: .relaxed) }

    public static func request() { flag.store(true, ordering: .relaxed) }

    public static func reset() { flag.store(false, ordering: .relaxed) }

    /// Installs the SIGINT handler.
    public static func install() {
        signal(SIGINT) { _ in
            Interrupt.request()
            let message = "\nlowbit: stopping after the trial in flight (Ctrl-C again to quit now)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            signal(SIGINT, SIG_DFL)
        }
    }
}
