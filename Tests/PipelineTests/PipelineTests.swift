import Foundation
import KernelKit
import Kernels
import Machine
import Measure
import Pipeline
import Testing
import Toolchain

/// One machine model, compiler and scratch cache for the whole suite.
enum Harness {
    static let machine: MachineDescription = try! MachineModel().description

    static var lowbit: URL {
        let candidates = [Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])]
            .map { $0.deletingLastPathComponent().appendingPathComponent("lowbit") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    static func scratchCache() -> ArtifactCache {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-tests-\(UUID().uuidString)")
        return ArtifactCache(directory: dir)
    }

    /// A runner with short timing (these tests check correctness, not speed).
    static func runner(cache: ArtifactCache = scratchCache(), floor: Duration = .seconds(10)) throws -> KernelRunner {
        var policy = TimingPolicy()
        policy.warmup = 1
        policy.minSamples = 2
        policy.maxSamples = 3
        policy.budget = .milliseconds(100)
        var limit = TimeLimit()
        limit.floor = floor
        let runner = try KernelRunner(machine: machine, workerExecutable: lowbit, cache: cache, policy: policy, timeLimit: limit)
        return runner
    }
}

@Suite("gemm-w8a8 variants match the reference", .serialized)
struct GemmW8A8VariantTests {
    let family = GemmW8A8()

    /// Odd shapes: M not a multiple of MR, N and K not multiples of the tiles, K with a partial group of 4.
    static let shapes: [(m: Int, n: Int, k: Int)] = [(1, 37, 67), (3, 50, 130), (17, 65, 301)]

    @Test(arguments: GemmW8A8().targets)
    func runnableVariantsAreBitExact(isa: ISATarget) throws {
        guard isa.runs(on: Harness.machine.isa) else {
            print("skipping \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        let base = family.defaultConfiguration(isa: isa, machine: nil)
        // The default, a small-block one (several K blocks: partial sums), and a two-thread grid layout.
        var small = base
        small["kc"] = .int(64)
        small["mc"] = .int(isa == .avx512vnni || isa == .avxvnni ? 48 : 16)
        small["nc"] = .int(base.int("nr") == 64 ? 128 : 64)
        small["mr"] = .int(isa == .portable ? 3 : base.int("mr"))
        small["mc"] = .int(small.int("mr") * 8)
        var threaded = small
        threaded["threads"] = .int(2)
        threaded["tm"] = .int(2)
        var threadedN = base
        threadedN["threads"] = .int(2)
        for config in [base, small, threaded, threadedN] {
            try family.check(config, machine: nil)
            for s in Self.shapes {
                let workload = Workload(family: family.name, shape: ["m": s.m, "n": s.n, "k": s.k])
                let r = runner.run(family, workload, config, seed: UInt64(s.m * 1000 + s.k), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true)
                #expect(r.verification?.checked == s.m * s.n)
            }
        }
    }

    @Test func aTimedTrialReportsTimingGopsAndCounters() throws {
        let runner = try Harness.runner()
        let config = try family.configuration(overrides: [:], machine: MachineContext(Harness.machine))
        let workload = Workload(family: family.name, shape: ["m": 16, "n": 256, "k": 512])
        let r = runner.run(family, workload, config)
        #expect(r.status == .ok, "\(r.message ?? "")")
        let t = try #require(r.timing)
        #expect(t.count >= 2 && t.min > 0 && t.min <= t.median)
        #expect((r.gops ?? 0) > 0)
        #expect(r.bindings.count == config.int("threads"))
        #expect(r.counters.contains { $0.event == "task-clock" && $0.value != nil })
    }

    @Test func unsupportedISAIsReportedNotRun() throws {
        guard let isa = family.targets.first(where: { !$0.runs(on: Harness.machine.isa) }) else { return }
        let runner = try Harness.runner()
        let config = family.defaultConfiguration(isa: isa, machine: nil)
        let r = runner.run(family, Workload(family: family.name, shape: ["m": 2, "n": 16, "k": 16]), config)
        #expect(r.status == .unsupported)
        #expect(r.message?.contains("lacks") == true || r.message?.contains("code and this machine") == true)
    }

    @Test func brokenConstraintsAreRejectedBeforeCompiling() throws {
        let runner = try Harness.runner()
        var config = family.defaultConfiguration(isa: .portable, machine: nil)
        config["mc"] = .int(24)
        config["mr"] = .int(5)
        let r = runner.run(family, Workload(family: family.name, shape: ["m": 2, "n": 16, "k": 16]), config)
        #expect(r.status == .rejected)
        #expect(r.message?.contains("mc-tiles") == true)
        #expect(r.variant == nil, "nothing was rendered or compiled")
    }
}

@Suite("The worker survives faulty variants", .serialized)
struct WorkerIsolationTests {
    let family = FaultInjection()

    func trial(_ runner: KernelRunner, _ fault: FaultInjection.Fault) -> TrialResult {
        var config = family.defaultConfiguration(isa: .portable, machine: nil)
        config["fault"] = .name(fault.rawValue)
        return runner.run(family, Workload(family: family.name, shape: ["n": 1000]), config)
    }

    @Test func everyFaultBecomesAFailedTrialAndTheNextTrialWorks() throws {
        let runner = try Harness.runner(floor: .seconds(1))
        let expectations: [(FaultInjection.Fault, TrialResult.Status, String)] = [
            (.segfault, .crashed, "SIGSEGV"),
            (.writePastEnd, .crashed, "SIGSEGV"),
            (.illegalInstruction, .crashed, "SIGILL"),
            (.abort, .crashed, "SIGABRT"),
            (.writeBeforeStart, .verifyFailed, "before the start"),
            (.wrongAnswer, .verifyFailed, "differ"),
            (.hang, .timeout, "killed"),
        ]
        var restarts = runner.workerRestarts
        for (fault, status, text) in expectations {
            let r = trial(runner, fault)
            #expect(r.status == status, "\(fault): \(r.status.rawValue) \(r.message ?? "")")
            #expect(r.message?.contains(text) == true, "\(fault): \(r.message ?? "")")
            let ok = trial(runner, .none)
            #expect(ok.status == .ok, "after \(fault): \(ok.message ?? "")")
            if status == .crashed || status == .timeout {
                #expect(runner.workerRestarts > restarts, "\(fault) should have replaced the worker")
            }
            restarts = runner.workerRestarts
        }
    }

    @Test func crashesNameTheStage() throws {
        let runner = try Harness.runner()
        let r = trial(runner, .segfault)
        #expect(r.stage == "run")
    }
}

@Suite("Artifact cache through the runner", .serialized)
struct RunnerCacheTests {
    @Test func corruptedArtifactIsRebuiltNotLoaded() throws {
        let cache = Harness.scratchCache()
        let runner = try Harness.runner(cache: cache)
        let family = GemmW8A8()
        let config = family.defaultConfiguration(isa: .portable, machine: nil)
        let workload = Workload(family: family.name, shape: ["m": 3, "n": 20, "k": 40])
        let first = runner.run(family, workload, config, verifyOnly: true)
        #expect(first.status == .ok && first.fromCache == false)
        let second = runner.run(family, workload, config, verifyOnly: true)
        #expect(second.fromCache == true)
        // Corrupt the shared object on disk (a new file: the worker's mapping of the old one stays valid).
        let dir = cache.directory.appendingPathComponent(try #require(first.cacheKey))
        let so = try #require(try FileManager.default.contentsOfDirectory(atPath: dir.path).first { $0.hasSuffix(".so") })
        let path = dir.appendingPathComponent(so)
        var bytes = try Data(contentsOf: path)
        bytes.replaceSubrange(bytes.count / 2..<bytes.count / 2 + 64, with: Data(repeating: 0xCC, count: 64))
        try bytes.write(to: path, options: .atomic)
        let third = runner.run(family, workload, config, verifyOnly: true)
        #expect(third.fromCache == false, "a corrupted artifact must be rebuilt")
        #expect(third.status == .ok)
    }

    @Test func compileErrorsCarryTheCompilersMessage() throws {
        let compiler = try CompilerDiscovery.discover()
        let cache = Harness.scratchCache()
        let job = CompileJob(name: "broken", source: "int f(void) { return undeclared; }\n", compiler: compiler)
        #expect {
            _ = try cache.artifact(for: job)
        } throws: { error in "\(error)".contains("undeclared") }
    }
}

@Suite("peak-compute runs and is exact", .serialized)
struct PeakComputeRunTests {
    @Test func everyRunnableOperationVerifies() throws {
        let runner = try Harness.runner()
        let family = PeakCompute()
        var ran = 0
        for (isa, op) in PeakCompute.operations where isa.runs(on: Harness.machine.isa) {
            var config = family.defaultConfiguration(isa: isa, machine: nil)
            config["op"] = .name(op.rawValue)
            config["threads"] = .int(min(2, Harness.machine.topology.pus.count))
            let r = runner.run(family, Workload(family: family.name, shape: ["iterations": 5000]), config)
            #expect(r.status == .ok, "\(isa) \(op): \(r.message ?? "")")
            #expect((r.gops ?? 0) > 0)
            ran += 1
        }
        if Harness.machine.isa.has(.avx2) { #expect(ran >= 3) }
    }
}
