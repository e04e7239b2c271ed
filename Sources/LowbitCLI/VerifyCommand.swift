import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine
import Measure
import Pipeline
import Toolchain

/// `lowbit verify`: the bring-up check of a machine. Every family's variants on every target this
/// machine runs are built with its compiler and compared with the Swift references on small shapes
/// (tails and odd sizes), nothing timed; targets it cannot run are compiled only.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every kernel variant this machine runs against its Swift reference, on small shapes (no timing).",
        discussion: """
            For each family and each target this machine runs: the default configuration with two \
            threads where the family has threads, then each named parameter (unpack method, gather, \
            cache format, layout, ...) set to each of its other values in turn, on small shapes with \
            tails; every variant is built with this machine's compiler, run in a worker process and \
            compared with the family's Swift reference. Targets the machine cannot run (another ISA, \
            Arm code on x86-64) are compiled only. Exits with status 1 when any variant fails. Run it \
            first on a new machine, or after changing the compiler (--cc).
            """
    )

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Only this family (repeatable; default: every family).") var family: [String] = []
    @Option(name: .long, help: "Only this target (repeatable; default: every target of each family).") var isa: [String] = []
    @Option(help: "Directory of the compiled-artifact cache (default: $LOWBIT_CACHE_DIR or ~/.cache/lowbit/kernels).")
    var cacheDir: String?
    @Option(help: "C compiler to use (default: $LOWBIT_CC, the Swift toolchain's clang, cc, gcc).") var cc: String?

    func run() throws {
        let logger = global.logger("lowbit.verify")
        let families = try family.isEmpty ? KernelRegistry.families : family.map { try KernelRegistry.family(named: $0) }
        let targets = try isa.map { name in
            guard let target = ISATarget(rawValue: name) else {
                throw ValidationError("--isa \(name): not a target; targets: \(ISATarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return target
        }
        let machine = try MachineModel(logger: logger).description
        let context = MachineContext(machine)
        let compiler = try CompilerDiscovery.discover(explicit: cc)
        var policy = TimingPolicy()
        policy.budget = .milliseconds(100)
        let runner = try KernelRunner(
            machine: machine, workerExecutable: KernelRunner.currentExecutable, compiler: compiler,
            cache: ArtifactCache(directory: cacheDir.map { URL(fileURLWithPath: $0) }), policy: policy, logger: logger)
        print("Checking kernel variants against their Swift references on \(machine.cpu.name) with \(compiler.version) (no timing)")
        var table = Table(["family", "target", "variant", "shape", "result"], alignments: [.left, .left, .left, .left, .left])
        var counts: [Outcome: Int] = [:], skipped: [String] = []
        for f in families {
            guard let shapes = KernelRegistry.verificationShapes[f.name] else {
                skipped.append("\(f.name) (no verification shape: add one to KernelRegistry.verificationShapes)")
                continue
            }
            for target in f.targets where targets.isEmpty || targets.contains(target) {
                let runs = target.runs(on: machine.isa)
                // A target this machine cannot run is compiled once per distinct source, at the first shape.
                var compiled = Set<String>()
                for (index, shape) in shapes.enumerated() where runs || index == 0 {
                    let workload = Workload(family: f.name, shape: shape)
                    let shapeText = runs ? workload.description.replacingOccurrences(of: "\(f.name) ", with: "") : "-"
                    for config in KernelRegistry.verificationConfigurations(f, isa: target, workload: workload, machine: context, vary: index == 0) {
                        let (outcome, variant, detail): (Outcome, String, String)
                        if runs {
                            let r = runner.run(f, workload, config, verifyOnly: true)
                            outcome = r.status == .ok ? .verified : .failed
                            variant = r.variant ?? "-"
                            detail = r.status == .ok
                                ? (r.verification.map { "ok: \($0.checked) outputs, \($0.tolerance)" } ?? "ok") : "\(r.status.rawValue): \(r.message ?? "")"
                        } else {
                            do {
                                let source = try f.render(config)
                                guard compiled.insert(source.name).inserted else { continue }
                                variant = source.name
                                (outcome, detail) = Self.compileOnly(source, target: target, compiler: compiler, machine: machine.isa)
                            } catch {
                                (outcome, variant, detail) = (.failed, "-", "render-error: \(error)")
                            }
                        }
                        counts[outcome, default: 0] += 1
                        table.add([f.name, target.rawValue, variant, shapeText, detail])
                    }
                }
            }
        }
        print(table.render())
        var summary = "\(counts[.verified] ?? 0) verified, \(counts[.failed] ?? 0) failed, \(counts[.compiledOnly] ?? 0) compiled only (targets this machine cannot run)"
        if let missing = counts[.notCompiled] { summary += ", \(missing) not compiled (no toolchain for their architecture)" }
        if !skipped.isEmpty { summary += "; not checked: " + skipped.joined(separator: ", ") }
        print(summary)
        if counts[.failed, default: 0] > 0 { throw ExitCode(1) }
    }

    /// What became of one variant.
    enum Outcome { case verified, failed, compiledOnly, notCompiled }

    /// Compiles a variant this machine cannot run (cross-compiling Arm code where the toolchain can) and
    /// says how it went.
    static func compileOnly(_ source: KernelSource, target: ISATarget, compiler: CompilerInfo, machine: ISAFeatures) -> (Outcome, String) {
        let cross: CrossTarget? = target.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
        do {
            try checkCompiles(CompileJob(name: source.name, source: source.code, flags: target.compilerFlags, compiler: compiler), target: cross)
            return (.compiledOnly, "compiled only (\(target.missingFeatures(on: machine) ?? "not usable here"))")
        } catch ToolchainError.crossTargetUnavailable(let reason) {
            return (.notCompiled, "not compiled: \(reason)")
        } catch {
            return (.failed, "compile-error: \(error)")
        }
    }
}
