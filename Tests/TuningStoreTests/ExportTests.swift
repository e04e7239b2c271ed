import Foundation
import KernelKit
import Machine
import Measure
import Testing
import TuningStore

@Suite("Tuning store: export, import, C header")
struct ExportTests {
    /// A store on machine `id` with bests for three gemm shapes and one attention shape.
    func populated(_ dir: TempDir, _ name: String, id: String) throws -> TuningStore {
        let store = try TuningStore(path: dir.file(name))
        try store.record(machine: machine(id), ceilings: ["int8-gops": 150])
        for (m, g) in [(1, 20.0), (64, 120), (256, 140)] {
            try store.insert(trial(machine: id, workload: gemm(m), configuration: config(mr: 1), gops: g / 2))
            try store.insert(trial(machine: id, workload: gemm(m), configuration: config(mr: 4), gops: g))
            try store.insert(trial(machine: id, workload: gemm(m), configuration: config(mr: 8), status: "crashed"))
        }
        let attention = Workload(family: "attention-decode", shape: ["heads": 32, "tokens": 4096, "dim": 128])
        try store.insert(
            trial(
                machine: id, workload: attention,
                configuration: Configuration(["kv": .name("int4"), "block": .int(64), "threads": .int(2)]), gops: 33.5))
        return store
    }

    @Test func exportThenImportRoundTripsTheBests() throws {
        let dir = TempDir()
        let id = "x86_64-amd-2c-00000000000000e1"
        let source = try populated(dir, "a.sqlite", id: id)
        let export = try source.export(machine: id, lowbitVersion: "0.1.0")
        #expect(export.entries.count == 4)
        #expect(export.machine == machine(id))
        #expect(export.ceilings == ["int8-gops": 150])
        let gemm64 = try #require(export.entries.first { $0.workload == gemm(64) })
        #expect(gemm64.gops == 120 && gemm64.configuration == config(mr: 4) && gemm64.trialCount == 3)
        #expect(gemm64.timing?.count == 5)

        let data = try export.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"schema\" : \"lowbit-tuning-export\""))
        #expect(text.contains("\"version\" : 1"))
        #expect(text.range(of: #"\"exportedAt\" : \"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\""#, options: .regularExpression) != nil)
        let decoded = try TuningExport.decode(data)
        #expect(decoded.entries.map(\.workload) == export.entries.map(\.workload))

        let target = try TuningStore(path: dir.file("b.sqlite"))
        let report = try target.importExport(decoded)
        #expect(report.added.count == 4 && report.replaced.isEmpty && report.kept.isEmpty)
        let original = try source.bests(machine: id)
        let imported = try target.bests(machine: id)
        #expect(imported.map(\.workload) == original.map(\.workload))
        #expect(imported.map(\.configuration) == original.map(\.configuration))
        #expect(imported.map(\.gops) == original.map(\.gops))
        #expect(imported.map(\.templateVersion) == original.map(\.templateVersion))
        #expect(imported.map(\.minSeconds) == original.map(\.minSeconds))
        #expect(imported.allSatisfy { $0.strategy == "import" })
        #expect(try target.machine(id)?.ceilings == ["int8-gops": 150])
        // Imported points count as measured.
        #expect(
            try target.measuredPoints(
                machine: id, workload: gemm(64), templateVersion: 1, compiler: testCompiler, flags: testFlags
            ).keys.contains(config(mr: 4)))

        // Importing the same export again changes nothing and says so.
        let again = try target.importExport(decoded)
        #expect(again.added.isEmpty && again.replaced.isEmpty && again.kept.count == 4)
        #expect(try target.counts().trials == 4)
        // And exporting the import gives the same entries.
        let reexport = try target.export(machine: id, lowbitVersion: "0.1.0")
        #expect(reexport.entries.map(\.configuration) == export.entries.map(\.configuration))
    }

    /// An import keeps what the export said beyond the trial (its workload's trial count and the final
    /// that chose it), so exporting the imported database gives the same entries; trials measured after
    /// the import count on top, and a final run here takes over from the imported one.
    @Test func reexportAfterImportKeepsTrialCountsAndFinals() throws {
        let dir = TempDir()
        let id = "x86_64-amd-2c-00000000000000e7"
        let source = try populated(dir, "a.sqlite", id: id)
        let contenders = try source.finalists(machine: id, workload: gemm(64), compiler: testCompiler, count: 2)
        #expect(contenders.count == 2)
        try source.recordFinal(
            machine: id, workload: gemm(64), session: "final 1",
            entries: contenders.map { FinalEntry(trialID: $0.id!, configuration: $0.configuration, storedGops: $0.gops!, rounds: [$0.gops! * 0.9, $0.gops!]) })
        let exported = try TuningExport.decode(try source.export(machine: id, lowbitVersion: "0.1.0").jsonData())
        let final64 = try #require(exported.entries.first { $0.workload == gemm(64) }?.final)
        #expect(final64.finalists == 2 && final64.rounds == 2)

        let target = try TuningStore(path: dir.file("b.sqlite"))
        _ = try target.importExport(exported)
        let again = try target.export(machine: id, lowbitVersion: "0.1.0")
        #expect(again.entries.map(\.workload) == exported.entries.map(\.workload))
        #expect(again.entries.map(\.trialCount) == exported.entries.map(\.trialCount))
        #expect(again.entries.map(\.final) == exported.entries.map(\.final))

        // A slower trial measured here: one more trial, the imported final still decides.
        try target.insert(trial(machine: id, workload: gemm(64), configuration: config(mr: 2), gops: 1))
        let later = try #require(try target.export(machine: id, lowbitVersion: "0.1.0").entries.first { $0.workload == gemm(64) })
        #expect(later.trialCount == exported.entries.first { $0.workload == gemm(64) }!.trialCount + 1)
        #expect(later.final == final64)
        // A final run here replaces the imported one.
        let local = try target.finalists(machine: id, workload: gemm(64), compiler: testCompiler, count: 2)
        try target.recordFinal(
            machine: id, workload: gemm(64), session: "final 2",
            entries: local.map { FinalEntry(trialID: $0.id!, configuration: $0.configuration, storedGops: $0.gops!, rounds: [$0.gops!, $0.gops!, $0.gops!]) })
        let decided = try #require(try target.export(machine: id, lowbitVersion: "0.1.0").entries.first { $0.workload == gemm(64) })
        #expect(decided.final?.rounds == 3)
        // A faster trial here makes gemm(1)'s imported record history; pruning then drops it with its
        // import notes (and the slower trial above), and keeps the bests.
        try target.insert(trial(machine: id, workload: gemm(1), configuration: config(mr: 2), gops: 1000))
        #expect(try target.prune(machine: id) == 2)
        let pruned = try target.export(machine: id, lowbitVersion: "0.1.0")
        #expect(pruned.entries.count == exported.entries.count)
        #expect(pruned.entries.first { $0.workload == gemm(1) }?.trialCount == 1)
        #expect(pruned.entries.first { $0.workload == gemm(1) }?.final == nil)
    }

    @Test func importKeepsTheBetterRecordAndSaysSo() throws {
        let dir = TempDir()
        let id = "x86_64-amd-2c-00000000000000e2"
        let local = try TuningStore(path: dir.file("local.sqlite"))
        try local.record(machine: machine(id))
        try local.insert(trial(machine: id, workload: gemm(64), configuration: config(kc: 128), gops: 512.0))
        try local.insert(trial(machine: id, workload: gemm(1), configuration: config(kc: 128), gops: 10))

        let remote = try TuningStore(path: dir.file("remote.sqlite"))
        try remote.record(machine: machine(id))
        try remote.insert(trial(machine: id, workload: gemm(64), configuration: config(kc: 512), gops: 480.1))
        try remote.insert(trial(machine: id, workload: gemm(1), configuration: config(kc: 512), gops: 25))
        try remote.insert(trial(machine: id, workload: gemm(16), configuration: config(kc: 512), gops: 60))
        let export = try remote.export(machine: id, lowbitVersion: "0.1.0")

        let report = try local.importExport(export)
        #expect(report.added == [gemm(16)])
        #expect(report.kept.map(\.workload) == [gemm(64)])
        #expect(report.replaced.map(\.workload) == [gemm(1)])
        #expect(report.replaced.first?.storedGops == 10 && report.replaced.first?.importedGops == 25)
        let text = report.description
        #expect(text.contains("kept the stored record: 512.0 GOP/s measured vs 480.1 imported"))
        #expect(text.contains("replaced the stored record: 25.0 GOP/s imported vs 10.0 measured here"))

        #expect(try local.best(machine: id, workload: gemm(64))?.configuration == config(kc: 128))
        let replaced = try #require(try local.best(machine: id, workload: gemm(1)))
        #expect(replaced.configuration == config(kc: 512) && replaced.strategy == "import")
        // The losing import is still stored as a trial.
        #expect(try local.trials(workload: gemm(64)).count == 2)
    }

    @Test func importRanksColdAboveHot() throws {
        let dir = TempDir()
        let id = "x86_64-amd-2c-00000000000000e3"
        let cold = "cold: caches evicted before every sample"
        let local = try TuningStore(path: dir.file("local.sqlite"))
        try local.record(machine: machine(id))
        try local.insert(trial(machine: id, workload: gemm(1), configuration: config(kc: 128), gops: 40, dataState: cold))
        try local.insert(trial(machine: id, workload: gemm(8), configuration: config(kc: 128), gops: 300))

        let remote = try TuningStore(path: dir.file("remote.sqlite"))
        try remote.record(machine: machine(id))
        try remote.insert(trial(machine: id, workload: gemm(1), configuration: config(kc: 512), gops: 90))
        try remote.insert(trial(machine: id, workload: gemm(8), configuration: config(kc: 512), gops: 200, dataState: cold))
        let report = try local.importExport(try remote.export(machine: id, lowbitVersion: "0.1.0"))
        // The faster hot import loses to the cold record; the slower cold import wins over the hot one.
        #expect(report.kept.map(\.workload) == [gemm(1)])
        #expect(report.replaced.map(\.workload) == [gemm(8)])
        let text = report.description
        #expect(text.contains("kept the stored record: 40.0 GOP/s measured vs 90.0 imported, and the stored record was measured cold, the imported one hot"))
        #expect(text.contains("replaced the stored record: 200.0 GOP/s imported vs 300.0 measured here (the imported record was measured cold, the stored one hot)"))
        #expect(try local.best(machine: id, workload: gemm(1))?.configuration == config(kc: 128))
        #expect(try local.best(machine: id, workload: gemm(8))?.configuration == config(kc: 512))
    }

    @Test func exportNeedsAKnownMachineAndDecodeChecksTheSchema() throws {
        let dir = TempDir()
        let store = try TuningStore(path: dir.file("db.sqlite"))
        #expect(throws: TuningStoreError.unknownMachine("nope")) { try store.export(machine: "nope", lowbitVersion: "0") }
        #expect(throws: TuningStoreError.self) { try TuningExport.decode(Data(#"{"schema":"other","version":1}"#.utf8)) }
        #expect(throws: TuningStoreError.self) {
            try TuningExport.decode(Data(#"{"schema":"lowbit-tuning-export","version":2}"#.utf8))
        }
    }

    /// The C compilers to try: `cc`, and clang and gcc when present.
    static let compilers: [String] = {
        var seen = Set<String>()
        return ["cc", "clang", "gcc"].compactMap(executable).filter {
            seen.insert((try? FileManager.default.destinationOfSymbolicLink(atPath: $0)) ?? $0).inserted
        }
    }()

    @Test(.enabled(if: !compilers.isEmpty, "needs a C compiler"))
    func cHeaderCompilesAndItsLookupFindsExactAndNearest() throws {
        let dir = TempDir()
        let id = "x86_64-amd-2c-00000000000000e3"
        let store = try populated(dir, "db.sqlite", id: id)
        let header = store.cHeader(for: try store.export(machine: id, lowbitVersion: "0.1.0"))
        #expect(header.contains("#include <stdint.h>"))
        #expect(header.contains("generated by lowbit 0.1.0"))
        #expect(header.contains(id))
        #expect(header.contains("struct lowbit_gemm_w8a8_entry {"))
        #expect(header.contains("const char *isa;"))
        #expect(header.contains("static const int lowbit_gemm_w8a8_table_size = 3;"))
        _ = FileManager.default.createFile(atPath: dir.file("lowbit_tuning.h"), contents: Data(header.utf8))

        let main = """
            #include <stdio.h>
            #include "lowbit_tuning.h"
            #include "lowbit_tuning.h" /* the include guard works */

            static void show(const char *what, const struct lowbit_gemm_w8a8_entry *e) {
                if (!e) { printf("%s none\\n", what); return; }
                printf("%s m=%d n=%d k=%d isa=%s mr=%d kc=%d gops=%.1f\\n", what, e->m, e->n, e->k, e->isa, e->mr, e->kc, e->gops);
            }

            int main(void) {
                show("exact", lowbit_gemm_w8a8_lookup(4096, 64, 4096));
                show("near48", lowbit_gemm_w8a8_lookup(4096, 48, 4096));
                show("near2", lowbit_gemm_w8a8_lookup(4096, 2, 4096));
                show("near100000", lowbit_gemm_w8a8_lookup(4096, 100000, 4096));
                const struct lowbit_attention_decode_entry *a = lowbit_attention_decode_lookup(128, 32, 8192);
                printf("attention kv=%s block=%d tokens=%d\\n", a->kv, a->block, a->tokens);
                printf("fingerprint %s size %d\\n", LOWBIT_TUNING_FINGERPRINT, lowbit_gemm_w8a8_table_size);
                return 0;
            }
            """
        _ = FileManager.default.createFile(atPath: dir.file("main.c"), contents: Data(main.utf8))
        // A file that includes the header and uses nothing: no unused-variable or -function warnings.
        _ = FileManager.default.createFile(
            atPath: dir.file("unused.c"), contents: Data("#include \"lowbit_tuning.h\"\nint unused_marker;\n".utf8))

        // C with every C compiler found, and C++17 when a C++ compiler is there.
        var builds = Self.compilers.map { ($0, ["-std=c11"]) }
        if let cxx = executable("c++") ?? executable("clang++") { builds.append((cxx, ["-x", "c++", "-std=c++17"])) }
        for (cc, language) in builds {
            let flags = language + ["-Wall", "-Wextra", "-Werror", "-pedantic"]
            let compileOnly = try run(cc, flags + ["-c", dir.file("unused.c"), "-o", dir.file("unused.o")])
            #expect(compileOnly.status == 0, "\(cc): \(compileOnly.output)")
            let built = try run(cc, flags + [dir.file("main.c"), "-o", dir.file("main")])
            #expect(built.status == 0, "\(cc): \(built.output)")
            guard built.status == 0 else { continue }
            let ran = try run(dir.file("main"), [])
            #expect(ran.status == 0)
            let lines = ran.output.split(separator: "\n").map(String.init)
            #expect(lines.contains("exact m=64 n=4096 k=4096 isa=avx2 mr=4 kc=256 gops=120.0"), "\(cc): \(ran.output)")
            #expect(lines.contains("near48 m=64 n=4096 k=4096 isa=avx2 mr=4 kc=256 gops=120.0"), "\(cc): \(ran.output)")
            #expect(lines.contains("near2 m=1 n=4096 k=4096 isa=avx2 mr=4 kc=256 gops=20.0"), "\(cc): \(ran.output)")
            #expect(lines.contains("near100000 m=256 n=4096 k=4096 isa=avx2 mr=4 kc=256 gops=140.0"), "\(cc): \(ran.output)")
            #expect(lines.contains("attention kv=int4 block=64 tokens=4096"), "\(cc): \(ran.output)")
            #expect(lines.contains("fingerprint \(id) size 3"), "\(cc): \(ran.output)")
        }
    }
}
