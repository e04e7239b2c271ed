import Foundation

/// Number-to-text conversions used by the SVG writer and by tick labels.
///
/// Everything here is locale-free and deterministic: a value always prints the same way, with a
/// `.` decimal separator, no exponent noise such as `1.0000000002e-05`, and no `-0`.
public enum NumberFormat {
    /// `value` with at most `decimals` digits after the point, trailing zeros removed.
    ///
    /// `fixed(3.14159, decimals: 2)` is `"3.14"`, `fixed(2.5000001, decimals: 2)` is `"2.5"`,
    /// `fixed(-0.0001, decimals: 2)` is `"0"`. Non-finite values print as `"0"` (SVG has no NaN);
    /// magnitudes beyond 1e15 are clamped so the integer arithmetic stays exact.
    public static func fixed(_ value: Double, decimals: Int = 2) -> String {
        guard value.isFinite else { return "0" }
        let places = min(max(decimals, 0), 9)
        var scale: Double = 1
        for _ in 0..<places { scale *= 10 }
        let limit = 1e15
        let clamped = min(max(value, -limit), limit)
        let scaled = (abs(clamped) * scale).rounded()
        // Split into integer and fractional digits without going through Double's description.
        guard scaled < 9e18 else { return clamped < 0 ? "-1000000000000000" : "1000000000000000" }
        let units = UInt64(scaled)
        let divisor = UInt64(scale)
        let whole = units / divisor
        let fraction = units % divisor
        var text = String(whole)
        if places > 0 && fraction > 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: places - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        if clamped < 0 && units > 0 { text = "-" + text }
        return text
    }

    /// The fewest decimals (0...9) that write `step` exactly, e.g. 2 for 0.25 and 4 for 0.0125.
    public static func decimalsNeeded(for step: Double) -> Int {
        guard step.isFinite, step != 0 else { return 0 }
        let magnitude = abs(step)
        var scale: Double = 1
        for places in 0...9 {
            let scaled = magnitude * scale
            if abs(scaled - scaled.rounded()) <= 1e-6 * max(scaled, 1) { return places }
            scale *= 10
        }
        return 9
    }

    /// `value` written with `significant` significant digits (trailing zeros removed), without an
    /// exponent: `significantDigits(0.0123456, 3)` is `"0.0123"`, `significantDigits(1234.5, 3)` is
    /// `"1235"` (integer digits are never dropped).
    public static func significantDigits(_ value: Double, _ significant: Int = 3) -> String {
        guard value.isFinite, value != 0 else { return "0" }
        let exponent = Int(floor(log10(abs(value))))
        let decimals = max(0, significant - 1 - exponent)
        return fixed(value, decimals: decimals)
    }
}

/// How axis tick labels (and value labels on charts) are written.
public enum TickFormat: Sendable {
    /// SI-style compaction: `0.25`, `1`, `16`, `1k`, `4k`, `1.5M`, `2G`. Integers below a million
    /// that do not compact to at most two decimals (e.g. `1024`) are written out in full.
    case compact
    /// Binary byte sizes: `512 B`, `32 KiB`, `1.5 MiB`, `2 GiB`.
    case bytes
    /// Plain decimal with the given maximum number of decimals, no suffixes.
    case plain(decimals: Int)
    /// A fraction written as a percentage: `0.62` becomes `62%`.
    case percent
    /// Any other formatting.
    case custom(@Sendable (Double) -> String)

    /// The label for `value`. `step`, when given (linear axes), is the spacing between ticks and
    /// sets how many decimals every label carries, so that `1.0125` is not rounded to `1.01`.
    public func label(_ value: Double, step: Double? = nil) -> String {
        guard value.isFinite else { return "" }
        switch self {
        case .compact:
            return Self.compactLabel(value, step: step)
        case .bytes:
            return Self.bytesLabel(value)
        case .plain(let decimals):
            if let step { return NumberFormat.fixed(value, decimals: NumberFormat.decimalsNeeded(for: step)) }
            return NumberFormat.fixed(value, decimals: decimals)
        case .percent:
            let percent = value * 100
            let decimals = step.map { NumberFormat.decimalsNeeded(for: $0 * 100) } ?? (abs(percent) < 10 ? 1 : 0)
            return NumberFormat.fixed(percent, decimals: decimals) + "%"
        case .custom(let format):
            return format(value)
        }
    }

    private static let siUnits: [(Double, String)] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]

    private static func compactLabel(_ value: Double, step: Double?) -> String {
        if value == 0 { return "0" }
        let magnitude = abs(value)
        let unit = siUnits.first { magnitude >= $0.0 * 0.9999999 }
        if let step {
            // Linear axes: every label shows the step's precision in its own unit.
            let divisor = unit?.0 ?? 1
            let decimals = NumberFormat.decimalsNeeded(for: step / divisor)
            return NumberFormat.fixed(value / divisor, decimals: decimals) + (unit?.1 ?? "")
        }
        guard let (divisor, suffix) = unit else {
            if magnitude < 0.001 { return scientific(value) }
            return NumberFormat.significantDigits(value, 3)
        }
        let scaled = value / divisor
        if NumberFormat.decimalsNeeded(for: scaled) <= 2 {
            return NumberFormat.fixed(scaled, decimals: 2) + suffix
        }
        if magnitude < 1e6 && value == value.rounded() { return NumberFormat.fixed(value, decimals: 0) }
        return NumberFormat.significantDigits(scaled, 3) + suffix
    }

    private static func scientific(_ value: Double) -> String {
        let exponent = Int(floor(log10(abs(value))))
        var power: Double = 1
        for _ in 0..<abs(exponent) { power *= 10 }
        let mantissa = exponent < 0 ? value * power : value / power
        return NumberFormat.significantDigits(mantissa, 2) + "e" + String(exponent)
    }

    private static func bytesLabel(_ value: Double) -> String {
        let units: [(Double, String)] = [
            (1_099_511_627_776, "TiB"), (1_073_741_824, "GiB"), (1_048_576, "MiB"), (1024, "KiB"),
        ]
        let magnitude = abs(value)
        for (divisor, suffix) in units where magnitude >= divisor {
            let scaled = value / divisor
            let text = NumberFormat.decimalsNeeded(for: scaled) <= 2
                ? NumberFormat.fixed(scaled, decimals: 2) : NumberFormat.significantDigits(scaled, 3)
            return text + " " + suffix
        }
        return NumberFormat.significantDigits(value, 3) + " B"
    }
}
