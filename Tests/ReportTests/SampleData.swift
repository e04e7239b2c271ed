import Foundation
import Report

/// MADE-UP SAMPLE DATA for tests and for looking at the charts. None of these numbers was measured:
/// they only have plausible shapes. The real report draws the CLI's measurements.
enum SampleData {
    static let label = "sample data (made up, not measured)"

    static func roofline() -> RooflineChart {
        RooflineChart(
            title: "Roofline \u{2014} sample data",
            bandwidthCeilings: [
                .init("L1 read", gigabytesPerSecond: 1210),
                .init("L2 read", gigabytesPerSecond: 530),
                .init("L3 read", gigabytesPerSecond: 205),
                .init("DRAM triad", gigabytesPerSecond: 38.5),
            ],
            computeCeilings: [
                .init("int8 avx512-vnni", gigaOpsPerSecond: 2450),
                .init("int8 avx2", gigaOpsPerSecond: 1160),
                .init("fp32 fma avx512", gigaOpsPerSecond: 610),
            ],
            points: [
                .init("M=1", series: "gemm-w8a8", intensity: 1.98, gigaOpsPerSecond: 61, attainment: 0.80),
                .init("M=8", series: "gemm-w8a8", intensity: 15.2, gigaOpsPerSecond: 405, attainment: 0.69),
                .init("M=64", series: "gemm-w8a8", intensity: 98, gigaOpsPerSecond: 1630, attainment: 0.67),
                .init("M=256", series: "gemm-w8a8", intensity: 240, gigaOpsPerSecond: 1910, attainment: 0.78),
                .init("M=1", series: "gemm-w4a4", intensity: 3.9, gigaOpsPerSecond: 112, attainment: 0.75),
                .init("M=8", series: "gemm-w4a4", intensity: 29, gigaOpsPerSecond: 560, attainment: 0.50),
                .init("M=64", series: "gemm-w4a4", intensity: 170, gigaOpsPerSecond: 1370, attainment: 0.56),
                .init("INT4 KV", series: "attention-decode", intensity: 0.98, gigaOpsPerSecond: 29, attainment: 0.77),
                .init("INT8 KV", series: "attention-decode", intensity: 0.51, gigaOpsPerSecond: 16.5, attainment: 0.84),
                .init("rmsnorm-reorder-quantize", series: "quantize", intensity: 0.62, gigaOpsPerSecond: 7.9, attainment: 0.33),
                .init("silu-mul-quantize", series: "quantize", intensity: 0.45, gigaOpsPerSecond: 6.1, attainment: 0.35),
            ])
    }

    /// Best-so-far GOP/s against trial number for four strategies.
    static func convergence() -> LineChart {
        var generator = SplitMix(seed: 7)
        let strategies: [(String, Double, Double)] = [
            ("exhaustive", 0.012, 1910), ("random", 0.05, 1880), ("analytical", 0.25, 1850), ("model-guided", 0.12, 1905),
        ]
        let series = strategies.map { name, rate, best in
            var bestSoFar = 0.0
            let points = (1...120).map { trial -> DataPoint in
                let progress = 1 - exp(-rate * Double(trial))
                let sample = best * progress * (0.55 + 0.45 * generator.unit())
                bestSoFar = max(bestSoFar, sample)
                return DataPoint(Double(trial), bestSoFar)
            }
            return LineChart.Series(name, points: points)
        }
        return LineChart(title: "Tuning convergence, gemm-w8a8 M=256 \u{2014} sample data",
                         xAxis: AxisSpec("Trial"), yAxis: AxisSpec("Best so far (GOP/s)"), series: series, step: true)
    }

    /// Throughput against batch size per family and target.
    static func throughputByBatch() -> LineChart {
        let batches = (0...8).map { pow(2, Double($0)) }
        let curves: [(String, Double, Double)] = [
            ("gemm-w4a4 avx512", 1450, 9), ("gemm-w8a8 avx512-vnni", 1950, 14), ("gemm-w8a8 avx2", 980, 12),
            ("fp32 reference", 540, 6),
        ]
        let series = curves.map { name, peak, half in
            LineChart.Series(name, x: batches, y: batches.map { peak * $0 / ($0 + half) })
        }
        return LineChart(title: "Kernel throughput against batch size \u{2014} sample data",
                         xAxis: AxisSpec("Batch size (tokens)", kind: .log2), yAxis: AxisSpec("Throughput (GOP/s)"),
                         series: series)
    }

    /// Single-core bandwidth against working-set size, with the cache sizes marked.
    static func bandwidthBySize() -> LineChart {
        let sizes = stride(from: 12.0, through: 30.0, by: 1).map { pow(2, $0) }
        let levels: [(Double, Double)] = [(48 * 1024, 150), (2 * 1_048_576, 72), (32 * 1_048_576, 31), (.infinity, 14.5)]
        func bandwidth(_ size: Double, scale: Double) -> Double {
            // Smooth steps between cache levels, in log space.
            var value = levels[0].1
            for (index, (capacity, _)) in levels.dropLast().enumerated() {
                let next = levels[index + 1].1
                let t = 1 / (1 + exp(-4 * (log2(size) - log2(capacity) - 0.4)))
                value = value * (1 - t) + next * t
            }
            return value * scale
        }
        let series = [("read", 1.0), ("copy", 0.72), ("triad", 0.8)].map { name, scale in
            LineChart.Series(name, x: sizes, y: sizes.map { bandwidth($0, scale: scale) })
        }
        return LineChart(title: "Bandwidth against working-set size, one core \u{2014} sample data",
                         xAxis: AxisSpec("Working set", kind: .log2, format: .bytes), yAxis: AxisSpec("Bandwidth (GB/s)"),
                         series: series,
                         referenceLines: [.vertical(at: 48 * 1024, label: "L1"), .vertical(at: 2 * 1_048_576, label: "L2"),
                                          .vertical(at: 32 * 1_048_576, label: "L3")])
    }

    static func report() -> HTMLReport {
        var report = HTMLReport(title: "lowbit report: SAMPLE DATA", subtitle: "x86_64-genuineintel-8c-0123456789abcdef, " + label,
                                generatedAt: Date(timeIntervalSince1970: 1_750_000_000), generator: "lowbit report (sample)")
        var machine = HTMLReport.Section("Machine")
        machine.paragraph("Every number on this page is " + label + "; it exists to show the layout. A real report holds measured values & says how they were measured <always>.")
        machine.definitions(["CPU": "Example CPU @ 3.0 GHz (8 cores, 16 threads)", "ISA": "AVX2, FMA, AVX-512 F/BW/VL/VNNI",
                             "Caches": "L1d 48 KiB, L2 2 MiB per core; L3 32 MiB shared", "Compiler": "clang 17.0.6"])
        var roofline = HTMLReport.Section("Roofline")
        roofline.figure(Self.roofline(), caption: "Kernels against this machine's ceilings. Percentages: achieved fraction of the roof at the kernel's intensity.")
        roofline.table(HTMLReport.Table(caption: "Ceilings", header: ["ceiling", "kind", "value", "unit"], rows: [
            ["L1 read", "bandwidth", "1210", "GB/s"], ["L2 read", "bandwidth", "530", "GB/s"], ["L3 read", "bandwidth", "205", "GB/s"],
            ["DRAM triad", "bandwidth", "38.5", "GB/s"], ["int8 avx512-vnni", "compute", "2450", "GOP/s"],
            ["int8 avx2", "compute", "1160", "GOP/s"], ["fp32 fma avx512", "compute", "610", "GOP/s"],
        ]))
        var tuning = HTMLReport.Section("Tuning")
        tuning.figure(Self.convergence(), caption: "Best configuration found so far against trials, per search strategy.")
        tuning.table(HTMLReport.Table(caption: "Best configurations, gemm-w8a8 M=256 N=4096 K=4096", header: ["rank", "target", "MR x NR", "KC", "threads", "GOP/s", "of roof"], rows: [
            ["1", "avx512-vnni", "6x32", "512", "8", "1910.4", "78.0%"], ["2", "avx512-vnni", "4x48", "384", "8", "1874.9", "76.5%"],
            ["3", "avx512-vnni", "8x16", "512", "8", "1790.2", "73.1%"], ["4", "avx2", "6x16", "256", "8", "952.7", "82.1%"],
        ], highlightedRows: [0]))
        tuning.preformatted("lowbit tune --family gemm-w8a8 --shape M=256,N=4096,K=4096 --strategy model-guided --budget 120")
        var kernels = HTMLReport.Section("Kernels")
        kernels.figure(Self.throughputByBatch(), caption: "Throughput against batch size.")
        var memory = HTMLReport.Section("Memory")
        memory.figure(Self.bandwidthBySize(), caption: "Bandwidth against working-set size; dashed lines at the cache sizes.")
        memory.note("Sample data: made up for layout only.")
        report.sections = [machine, roofline, tuning, kernels, memory]
        return report
    }
}

/// A small deterministic generator so the sample is the same on every run.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
