import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("gemm-w4a4-kv templates and rules")
struct GemmW4A4KVTemplateTests {
    let family = GemmW4A4KV()

    /// Every cache format on every target, with the default blocking and with small blocks (one-row
    /// tiles, one-group K blocks, an N block smaller than a head), warnings as errors.
    @Test(arguments: GemmW4A4KV().targets)
    func everyTargetAndCacheFormatCompilesWithWarningsAsErrors(isa: ISATarget) throws {
        let compiler = try CompilerDiscovery.discover()
        let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
        for format in KVCacheFormat.allCases {
            var config = family.defaultConfiguration(isa: isa, machine: nil)
            config["cache"] = .name(format.rawValue)
            var small = config
            small["mr"] = .int(1)
            small["kc"] = .int(128)
            small["nc"] = .int(64)
            small["unpack"] = .name("lut")
            small["page"] = .int(64)
            for c in [config, small] {
                let source = try family.render(c)
                do {
                    try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
                } catch ToolchainError.crossTargetUnavailable(let why) {
                    print("skipping \(isa): \(why)")
                    return
                }
            }
        }
    }

    @Test func sourceNamesTheEpilogueAndSharesTheCacheHelpers() throws {
        let config = try family.configuration(overrides: ["isa": "avx2", "cache": "int4", "page": "32"], machine: nil)
        let source = try family.render(config)
        #expect(source.name == "gemm_w4a4_kv__avx2_mr4_nr8_kc1024_mc64_nc512_mask_pf0_int4_p32")
        #expect(source.code.hasPrefix("/*\n * gemm-w4a4-kv, template version \(family.templateVersion)"))
        #expect(source.code.contains("#define PAGE 32") && source.code.contains("#define MAX_CODE 15.0f"))
        // The cache layout and quantizer are kv-append's, rendered from the same place.
        let append = try KVAppend().render(KVAppend().configuration(overrides: ["cache": "int4", "page": "32"], machine: nil))
        for helper in ["static inline size_t block_bytes(int d)", "static void store_row(", "(code_of(x[half + j], s, z) << 4)"] {
            #expect(source.code.contains(helper) && append.code.contains(helper), "\(helper)")
        }
        #expect(source.symbols["page_bytes"] == "\(source.name)_page_bytes")
        // gemm-w4a4 itself keeps its fp32 epilogue and knows nothing of the cache.
        let gemm = try GemmW4A4().render(GemmW4A4().configuration(overrides: ["isa": "avx2"], machine: nil))
        #expect(gemm.name == "gemm_w4a4__avx2_mr4_nr8_kc1024_mc64_nc512_mask_pf0")
        #expect(!gemm.code.contains("store_row") && !gemm.code.contains("PAGE") && !gemm.code.contains("math.h"))
        #expect(gemm.code.contains("size_t \(gemm.name)_workspace_bytes(void)"))
        #expect(gemm.symbols["page_bytes"] == nil)
    }

    func shapeRule(_ shape: [String: Int]) -> String? {
        do {
            try family.checkShape(Workload(family: family.name, shape: shape))
            return nil
        } catch let v as ConstraintViolation {
            return v.rule
        } catch {
            return "\(error)"
        }
    }

    @Test func shapesThatBreakARuleNameIt() {
        let ok = ["m": 3, "hkv": 2, "d": 64, "k": 384, "outliers": 128, "ctx": 100]
        func with(_ key: String, _ value: Int) -> [String: Int] { ok.merging([key: value]) { $1 } }
        #expect(shapeRule(ok) == nil)
        #expect(shapeRule(with("outliers", 0).merging(["k": 256]) { $1 }) == nil)
        #expect(shapeRule(with("kvbits", 8)) == nil)
        #expect(shapeRule(with("m", 0)) == "positive")
        #expect(shapeRule(with("hkv", 0)) == "positive")
        #expect(shapeRule(with("d", 7)) == "even-dim")
        #expect(shapeRule(with("k", 400)) == "groups")
        #expect(shapeRule(with("outliers", 6).merging(["k": 390]) { $1 }) == "outliers")
        #expect(shapeRule(with("kvbits", 5)) == "kvbits")
        #expect(shapeRule(with("ctx", 1)) == "fits")
        #expect(shapeRule(with("m", 202)) == "fits")
        #expect(shapeRule(["m": 256, "hkv": 32, "d": 128, "k": 4096, "outliers": 128, "ctx": 256]) == nil)
        #expect(shapeRule(["m": 256, "hkv": 64, "d": 256, "k": 4096, "outliers": 128, "ctx": 100_000]) == "size")
    }

    @Test func configurationRulesAreGemmW4A4sAndTheCacheDomains() {
        func rule(_ overrides: [String: String]) -> String? {
            do {
                _ = try family.configuration(overrides: overrides, machine: nil)
                return nil
            } catch let v as ConstraintViolation {
                return v.rule
            } catch {
                return "\(error)"
            }
        }
        #expect(rule(["isa": "avx2", "cache": "int8", "page": "64"]) == nil)
        #expect(rule(["isa": "avx2", "mr": "6"]) == "registers")
        #expect(rule(["isa": "avx2", "nr": "4"]) == "vector-width")
        #expect(rule(["mc": "66"]) == "domain")
        #expect(rule(["mr": "3", "mc": "64"]) == "mc-tiles")
        #expect(rule(["page": "8"]) == "domain")
        #expect(rule(["cache": "int2"]) == "domain")
        #expect(rule(["threads": "3", "tm": "2"]) == "thread-layout")
    }

    @Test func workloadBitsFixTheCacheFormat() {
        let w = Workload(family: family.name, shape: ["m": 1, "hkv": 1, "d": 8, "k": 256, "outliers": 0, "ctx": 64, "kvbits": 8])
        #expect(family.workloadParameters(w) == ["cache": .name("int8")])
        let machine = MachineContext(try! MachineModel().description)
        let config = family.analyticalConfiguration(for: w, machine: machine)
        #expect(config["cache"] == .name("int8") && config["page"] == .int(16))
        #expect(throws: Never.self) { try family.check(config, machine: machine) }
    }

    @Test func batchPlanSplitsRowsIntoPrefillAndDecode() {
        let plan = KVAppendPlan.batch(rows: 17, ctx: 100, seed: 3)
        #expect(plan.rows == 17)
        #expect(plan.runs.map(\.count) == [9, 4, 1, 1, 1, 1])
        #expect(plan.runs[0].start == 63, "positions 63...71 cross the 64-token boundary: every page size")
        #expect(plan.runs[1].start == 0)
        #expect(plan.runs.allSatisfy { $0.start >= 0 && $0.start + $0.count <= 100 })
        #expect(Array(plan.positions.prefix(9)) == (63...71).map(Int32.init) && plan.sequences.prefix(9).allSatisfy { $0 == 0 })
        #expect(KVAppendPlan.batch(rows: 1, ctx: 10, seed: 3).runs == [KVAppendRun(start: 9, count: 1)])
        #expect(KVAppendPlan.batch(rows: 3, ctx: 100, seed: 3).runs.map(\.count) == [2, 1])
        #expect(KVAppendPlan.batch(rows: 17, ctx: 100, seed: 3) == plan, "the plan depends on its arguments only")
    }
}
