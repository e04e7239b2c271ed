import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Logging
import Machine
import Measure
import Pipeline
import Toolchain

/// Shape options shared by `run` and `bench`: --m --n --k, or --shape name=value for other dimensions.
struct ShapeOptions: ParsableArguments {
    @Option(help: "Rows of the activations (tokens in the batch).") var m: Int?
    @Option(help: "Output channels.") var n: Int?
    @Option(help: "Input channels (reduction length).") var k: Int?
    @Option(name: .customLong("shape"), help: ArgumentHelp("Another shape dimension as name=value (repeatable).", valueName: "name=value"))
    var extra: [String] = []

    func workload(for family: any KernelFamily) throws -> Workload {
        var shape: [String: Int] = [:]
        if let m { shape["m"] = m }
        if let n { shape["n"] = n }
        if let k { shape["k"] = k }
        for item in extra {
            guard let size = Self.size(item) else { throw ValidationError("--shape expects name=integer, got '\(item)'") }
            shape[size.name] = size.value
        }
        let missing = family.dimensions.filter { shape[$0] == nil }
        guard missing.isEmpty else {
            throw ValidationError("\(family.name) needs \(family.dimensions.map { "--\($0)" }.joined(separator: " ")); missing: \(missing.joined(separator: ", "))")
        }
        let known = family.dimensions + family.optionalDimensions
        if let unknown = shape.keys.first(where: { !known.contains($0) }) {
            throw ValidationError("\(family.name) has no dimension '\(unknown)'; its dimensions are \(known.joined(separator: ", "))")
        }
        return Workload(family: family.name, shape: shape)
    }

    /// A `--shape` item `name=integer` split in two; nil when it is not one (an empty name included).
    static func size(_ item: String) -> (name: String, value: Int)? {
        let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let value = Int(parts[1]) else { return nil }
        return (parts[0], value)
    }
}

/// Options for how trials are measured.
struct MeasureOptions: ParsableArguments {
    @Option(help: "Time budget per variant for repeated samples, in seconds (default 2; 0.5 when tuning).") var budget: Double?
    var budgetWasDefault: Bool { budget == nil }
    @Option(help: "Seed for the random inputs.") var seed: UInt64 = 1
    @Option(help: "Directory of the compiled-artifact cache (default: $LOWBIT_CACHE_DIR or ~/.cache/lowbit/kernels).")
    var cacheDir: String?
    @Option(help: "C compiler to use (default: $LOWBIT_CC, the Swift toolchain's clang, cc, gcc).") var cc: String?
    @Flag(help: "Cold data: evict the caches before every timed run (default: hot, inputs reused by every sample).")
    var cold = false

    func runner(machine: MachineDescription, logger: Logger) throws -> KernelRunner {
        var policy = TimingPolicy()
        policy.budget = .milliseconds(Int((budget ?? 2) * 1000))
        let compiler = try CompilerDiscovery.discover(explicit: cc)
        let cache = ArtifactCache(directory: cacheDir.map { URL(fileURLWithPath: $0) })
        let runner = try KernelRunner(
            machine: machine, workerExecutable: KernelRunner.currentExecutable, compiler: compiler, cache: cache,
            policy: policy, logger: logger)
        runner.cold = cold
        return runner
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Build, verify and time one point of a family; print time, GOPS and counters.",
        discussion: """
            The variant is compiled (or taken from the cache), run in a separate worker process on fresh \
            random inputs with a poisoned, guarded output, compared with the family's Swift reference, \
            and only then timed. A crash, hang or wrong answer is reported, not fatal.
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Kernel family (see `lowbit kernels`).") var family: String
    @OptionGroup var shape: ShapeOptions
    @OptionGroup var params: ParamOptions
    @OptionGroup var measure: MeasureOptions
    @Flag(help: "Print the trial as JSON.") var json = false

    func run() throws {
        let logger = global.logger("lowbit.run")
        let f = try KernelRegistry.family(named: family)
        let workload = try shape.workload(for: f)
        try f.checkShape(workload)
        let machine = try MachineModel(logger: logger).description
        // Machine rules are the runner's to check, so an unusable ISA is reported as unsupported.
        // The workload's own parameters (e.g. attention's cache from kvbits) unless --param says otherwise.
        let config = try f.configuration(overrides: try params.overrides(for: f, isa: machine.isa), for: workload, machine: nil)
        let runner = try measure.runner(machine: machine, logger: logger)
        let result = runner.run(f, workload, config, seed: measure.seed)
        if json {
            print(try JSONOutput.encode(result))
        } else {
            print(TrialReport.text(result, note: f.workloadNote(workload)))
        }
        if !result.succeeded { throw ExitCode(1) }
    }
}

/// The hidden worker mode: serves trials over stdin/stdout for a parent `lowbit`.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Serve kernel trials for a parent lowbit process (internal).", shouldDisplay: false)

    func run() throws { TrialWorker.serve() }
}

enum TrialReport {
    static func text(_ r: TrialResult, note: String? = nil) -> String {
        var out: [String] = []
        out.append("\(r.workload)  [\(r.configuration)]")
        if let note { out.append("workload   \(note)") }
        if let variant = r.variant {
            let how = r.fromCache == true ? "from cache" : r.compileSeconds.map { String(format: "compiled in %.2f s", $0) } ?? ""
            out.append("variant    \(variant) (\(how))")
        }
        if let v = r.verification {
            out.append("verify     \(v.passed ? "passed" : "FAILED"): \(v.checked) outputs, \(v.mismatches) mismatches (\(v.tolerance))")
        }
        guard r.succeeded else {
            out.append("result     \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
            return out.joined(separator: "\n")
        }
        if let t = r.timing {
            out.append("time       min \(ms(t.min))  p20 \(ms(t.p20))  median \(ms(t.median))  p80 \(ms(t.p80))  (\(t.count) samples, \(t.stable ? "stable" : "not stable within 3%"))")
        }
        if let g = r.gops { out.append(String(format: "throughput %.2f GOP/s (useful ops at the minimum time)", g)) }
        let pus = r.bindings.map { $0.requested.map(String.init).joined(separator: ",") }.joined(separator: " ")
        let honoured = r.bindings.allSatisfy(\.honoured)
        out.append("threads    \(r.bindings.count) on PUs \(pus) (binding \(honoured ? "honoured" : "not honoured: \(r.bindings.first { !$0.honoured }?.message ?? "?")"))")
        if let d = r.dataState { out.append("data       \(d)") }
        let counted = r.counters.filter { if case .unavailable = $0.status { false } else { true } }
        if !counted.isEmpty {
            out.append("counters   per run, summed over threads: " + counted.map { "\($0.event) \($0.value.map(String.init) ?? "-")" }.joined(separator: ", "))
        }
        let missing = r.counters.filter { if case .unavailable = $0.status { true } else { false } }.map(\.event)
        if !missing.isEmpty { out.append("           unavailable: \(missing.joined(separator: ", ")) (see `lowbit counters`)") }
        return out.joined(separator: "\n")
    }

    static func ms(_ seconds: Double) -> String {
        seconds >= 0.1 ? String(format: "%.3f s", seconds) : String(format: "%.3f ms", seconds * 1000)
    }
}
