import Foundation

/// One labelled tick on an axis.
public struct Tick: Sendable, Equatable {
    public var value: Double
    public var label: String

    public init(value: Double, label: String) {
        self.value = value
        self.label = label
    }
}

/// A mapping from data values on one axis to pixel positions, with the ticks to draw.
public protocol AxisScale: Sendable {
    /// The data interval shown on the axis.
    var domain: ClosedRange<Double> { get }
    /// Pixel position of `domain.lowerBound`.
    var pixelStart: Double { get }
    /// Pixel position of `domain.upperBound` (smaller than `pixelStart` on a y axis).
    var pixelEnd: Double { get }
    /// Whether `value` can be drawn on this kind of axis (finite; positive on a log axis).
    func accepts(_ value: Double) -> Bool
    /// The pixel position of `value`, or `nil` when the axis cannot show it. Values outside the
    /// domain map outside the pixel range (callers clip).
    func pixel(_ value: Double) -> Double?
    /// The labelled ticks inside the domain.
    func ticks(format: TickFormat) -> [Tick]
    /// Unlabelled minor tick positions inside the domain (gridlines only).
    func minorTicks() -> [Double]
}

/// A linear axis with "nice" 1-2-5 ticks.
public struct LinearScale: AxisScale {
    public let domain: ClosedRange<Double>
    public let pixelStart: Double
    public let pixelEnd: Double
    /// About how many intervals the ticks should divide the domain into.
    public var targetTickCount: Int

    /// A scale showing `domain` between the pixel positions `from` and `to`. An empty domain is
    /// widened so that the mapping stays defined.
    public init(domain: ClosedRange<Double>, from pixelStart: Double, to pixelEnd: Double, targetTickCount: Int = 5) {
        var lo = domain.lowerBound.isFinite ? domain.lowerBound : 0
        var hi = domain.upperBound.isFinite ? domain.upperBound : 1
        if hi <= lo {
            let pad = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= pad
            hi = lo + 2 * pad
        }
        self.domain = lo...hi
        self.pixelStart = pixelStart
        self.pixelEnd = pixelEnd
        self.targetTickCount = max(targetTickCount, 2)
    }

    public func accepts(_ value: Double) -> Bool { value.isFinite }

    public func pixel(_ value: Double) -> Double? {
        guard value.isFinite else { return nil }
        let t = (value - domain.lowerBound) / (domain.upperBound - domain.lowerBound)
        return pixelStart + t * (pixelEnd - pixelStart)
    }

    /// The tick spacing: 1, 2 or 5 times a power of ten near `span / targetTickCount`. A nearby
    /// spacing that puts ticks on both ends of the domain is preferred (0...160 gets 20, not 50).
    public var step: Double {
        let span = domain.upperBound - domain.lowerBound
        let raw = span / Double(targetTickCount)
        let nearest = Self.niceStep(raw)
        guard raw.isFinite, raw > 0 else { return nearest }
        let exponent = floor(log10(raw))
        var candidates: [Double] = []
        for e in [exponent - 1, exponent, exponent + 1] {
            for m in [1.0, 2, 5] { candidates.append(m * pow(10, e)) }
        }
        func onGrid(_ value: Double, _ step: Double) -> Bool {
            abs(value / step - (value / step).rounded()) < 1e-6
        }
        let aligned = candidates
            .filter { span / $0 >= 3 - 1e-9 && span / $0 <= 8 + 1e-9 }
            .filter { onGrid(domain.lowerBound, $0) && onGrid(domain.upperBound, $0) }
            .sorted { abs(log($0 / raw)) < abs(log($1 / raw)) }
        return aligned.first ?? nearest
    }

    public func ticks(format: TickFormat = .compact) -> [Tick] {
        tickValues().map { Tick(value: $0, label: format.label($0, step: step)) }
    }

    /// The tick positions: every multiple of `step` inside the domain.
    public func tickValues() -> [Double] {
        let step = self.step
        guard step > 0, step.isFinite else { return [] }
        let tolerance = step * 1e-9
        let first = (domain.lowerBound / step - 1e-9).rounded(.up)
        let last = (domain.upperBound / step + 1e-9).rounded(.down)
        guard last >= first, last - first < 1000 else { return [] }
        return stride(from: first, through: last, by: 1).compactMap { index in
            var value = index * step
            if abs(value) < tolerance { value = 0 }
            return value >= domain.lowerBound - tolerance && value <= domain.upperBound + tolerance ? value : nil
        }
    }

    public func minorTicks() -> [Double] { [] }

    /// The value of the form 1, 2 or 5 times a power of ten nearest to `raw` (on a log scale), so
    /// that the tick count stays close to the target: 19.4 gives 20, 23.8 gives 20, 38 gives 50.
    public static func niceStep(_ raw: Double) -> Double {
        guard raw.isFinite, raw > 0 else { return 1 }
        let exponent = floor(log10(raw))
        let power = pow(10, exponent)
        let fraction = raw / power
        let nice: Double = fraction < 1.4142 ? 1 : fraction < 3.1623 ? 2 : fraction < 7.0711 ? 5 : 10
        return nice * power
    }

    /// The data's own range, for an x axis where the data ends should meet the plot edges: from
    /// zero when the values are not negative and start within a tenth of the span from it
    /// (trial numbers 1...120 give `0...120`). No values give `0...1`.
    public static func tightDomain(containing values: [Double]) -> ClosedRange<Double> {
        let finite = values.filter(\.isFinite)
        guard var lo = finite.min(), let hi = finite.max() else { return 0...1 }
        if hi == lo { return niceDomain(containing: finite) }
        if lo >= 0 && lo <= (hi - lo) * 0.1 { lo = 0 }
        return lo...hi
    }

    /// The smallest interval with tick-aligned ends that holds every finite value (and zero when
    /// `includeZero`). `0...97` becomes `0...100`; no values give `0...1`.
    public static func niceDomain(containing values: [Double], includeZero: Bool = false,
                                  targetTickCount: Int = 5) -> ClosedRange<Double> {
        var finite = values.filter(\.isFinite)
        if includeZero { finite.append(0) }
        guard var lo = finite.min(), var hi = finite.max() else { return 0...1 }
        if hi == lo {
            let pad = lo == 0 ? 1 : abs(lo) * 0.5
            lo -= lo == 0 && includeZero ? 0 : pad
            hi += pad
        }
        let step = niceStep((hi - lo) / Double(max(targetTickCount, 2)))
        let niceLo = (lo / step + 1e-9).rounded(.down) * step
        let niceHi = (hi / step - 1e-9).rounded(.up) * step
        return niceLo...niceHi
    }
}

/// The base of a logarithmic axis.
public enum LogBase: Sendable, Equatable {
    /// Decades, minor ticks at 2 and 5: performance, intensity, times.
    case ten
    /// Powers of two: batch sizes, working-set sizes in bytes.
    case two

    var value: Double { self == .ten ? 10 : 2 }
}

/// A logarithmic axis (base 10 or 2). Zero, negative and non-finite values are not shown.
public struct LogScale: AxisScale {
    public let domain: ClosedRange<Double>
    public let pixelStart: Double
    public let pixelEnd: Double
    public let base: LogBase
    /// The most labelled ticks before every other power is skipped.
    public var maximumLabelledTicks: Int

    /// A scale showing `domain` between the pixel positions `from` and `to`. A domain that is
    /// not positive or is empty is repaired (to one decade, or widened around its value).
    public init(domain: ClosedRange<Double>, base: LogBase = .ten, from pixelStart: Double, to pixelEnd: Double,
                maximumLabelledTicks: Int = 12) {
        var lo = domain.lowerBound
        var hi = domain.upperBound
        if !(hi.isFinite && hi > 0) { hi = 10 }
        if !(lo.isFinite && lo > 0) || lo >= hi { lo = hi / base.value }
        self.domain = lo...hi
        self.base = base
        self.pixelStart = pixelStart
        self.pixelEnd = pixelEnd
        self.maximumLabelledTicks = max(maximumLabelledTicks, 2)
    }

    public func accepts(_ value: Double) -> Bool { value.isFinite && value > 0 }

    public func pixel(_ value: Double) -> Double? {
        guard accepts(value) else { return nil }
        let lo = log(domain.lowerBound), hi = log(domain.upperBound)
        return pixelStart + (log(value) - lo) / (hi - lo) * (pixelEnd - pixelStart)
    }

    public func ticks(format: TickFormat = .compact) -> [Tick] {
        majorTickValues().map { Tick(value: $0, label: format.label($0)) }
    }

    /// Labelled positions: powers of the base (every k-th when there are too many); on a base-10
    /// axis holding at most two powers, also 2 and 5 times the powers, then 1-9 times them.
    public func majorTickValues() -> [Double] {
        let exponents = powerExponents()
        let powers = exponents.map { pow(base.value, Double($0)) }
        if powers.count > maximumLabelledTicks {
            // Keep every k-th power, aligned on exponents divisible by k (1, 4, 16, ... or 1, 100, ...).
            let every = Int((Double(powers.count) / Double(maximumLabelledTicks)).rounded(.up))
            return exponents.filter { $0 % every == 0 }.map { pow(base.value, Double($0)) }
        }
        // Two decades or less: label 2 and 5 times the powers too.
        guard base == .ten, powers.count <= 2 else { return powers }
        for mantissas in [[1.0, 2, 5], [1.0, 2, 3, 4, 5, 6, 7, 8, 9]] {
            let values = multiples(of: mantissas)
            if values.count >= 3 || mantissas.count == 9 && values.count >= 2 { return values }
        }
        // Shorter than a factor of two or so: linear ticks read best.
        let linear = LinearScale(domain: domain, from: pixelStart, to: pixelEnd, targetTickCount: 4)
        return linear.tickValues().filter { $0 > 0 }
    }

    public func minorTicks() -> [Double] {
        let majors = Set(majorTickValues())
        let candidates: [Double]
        switch base {
        case .ten: candidates = multiples(of: [1, 2, 5])
        case .two: candidates = powerExponents().map { pow(2, Double($0)) }
        }
        return candidates.filter { !majors.contains($0) }
    }

    /// The exponents of every integer power of the base inside the domain.
    private func powerExponents() -> [Int] {
        let b = base.value
        let first = Int((log(domain.lowerBound) / log(b) - 1e-9).rounded(.up))
        let last = Int((log(domain.upperBound) / log(b) + 1e-9).rounded(.down))
        guard last >= first, last - first < 400 else { return [] }
        return Array(first...last)
    }

    /// `mantissa * 10^k` for every k, kept when inside the domain.
    private func multiples(of mantissas: [Double]) -> [Double] {
        let first = Int(floor(log10(domain.lowerBound)))
        let last = Int(floor(log10(domain.upperBound)))
        guard last >= first, last - first < 400 else { return [] }
        var values: [Double] = []
        for exponent in first...last {
            let power = pow(10, Double(exponent))
            for m in mantissas {
                let v = m * power
                if v >= domain.lowerBound * (1 - 1e-9) && v <= domain.upperBound * (1 + 1e-9) { values.append(v) }
            }
        }
        return values
    }

    /// An interval holding every positive finite value, widened by `padding` times its
    /// logarithmic span on each side (at least a tenth of a power of the base). No values give one
    /// decade (or 1...16 for base 2); a single value gets half a power either side.
    public static func paddedDomain(containing values: [Double], base: LogBase = .ten,
                                    padding: Double = 0.05) -> ClosedRange<Double> {
        let positive = values.filter { $0.isFinite && $0 > 0 }
        guard let lo = positive.min(), let hi = positive.max() else { return base == .ten ? 1...10 : 1...16 }
        let b = base.value
        let logLo = log(lo) / log(b), logHi = log(hi) / log(b)
        let span = logHi - logLo
        let pad = span == 0 ? 0.5 : max(span * padding, 0.1)
        return pow(b, logLo - pad)...pow(b, logHi + pad)
    }
}
