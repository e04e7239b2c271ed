import KernelKit
import Kernels
import Testing

@Suite("lowbit verify's shapes and variations")
struct VerificationPlanTests {
    @Test func everyFamilyHasShapesThatMeetItsRules() throws {
        for f in KernelRegistry.families {
            let shapes = try #require(KernelRegistry.verificationShapes[f.name], "\(f.name) has no verification shape")
            #expect(!shapes.isEmpty)
            for shape in shapes {
                let w = Workload(family: f.name, shape: shape)
                try f.checkShape(w)
                for isa in f.targets {
                    #expect(!KernelRegistry.verificationConfigurations(f, isa: isa, workload: w, machine: nil, vary: false).isEmpty,
                            "\(f.name) on \(isa) at \(w): the default configuration breaks a rule")
                }
            }
        }
    }

    @Test func variationsTakeEachNamedValueTheRulesAllow() throws {
        let quantize = try KernelRegistry.family(named: "reorder-quantize")
        let w = Workload(family: quantize.name, shape: ["m": 19, "k": 1024, "outliers": 128])
        let avx2 = KernelRegistry.verificationConfigurations(quantize, isa: .avx2, workload: w, machine: nil, vary: true)
        #expect(Set(avx2.map { $0["gather"]!.description }) == ["insert", "vector", "scalar", "transpose"])
        #expect(avx2.count == 4 && avx2.allSatisfy { $0["threads"] == .int(2) && $0["isa"] == .name("avx2") })
        // transpose is AVX2's alone: the rules leave it out of the portable list, which has no other gather.
        let portable = KernelRegistry.verificationConfigurations(quantize, isa: .portable, workload: w, machine: nil, vary: true)
        #expect(!portable.contains { $0["gather"] == .name("transpose") })
        #expect(KernelRegistry.verificationConfigurations(quantize, isa: .avx2, workload: w, machine: nil, vary: false).count == 1)

        // A parameter the workload fixes is not varied: ybits = 16 holds out=fp16.
        let gemm = try KernelRegistry.family(named: "gemm-w4a4")
        let fp16 = Workload(family: gemm.name, shape: ["m": 7, "n": 40, "k": 640, "outliers": 128, "ybits": 16])
        let configs = KernelRegistry.verificationConfigurations(gemm, isa: .avx2, workload: fp16, machine: nil, vary: true)
        #expect(configs.allSatisfy { $0["out"] == .name("fp16") })
        #expect(configs.contains { $0["unpack"] == .name("lut") } && configs.contains { $0["gsum"] == .name("int32") })
        // gsum=int32 is AVX2's path only.
        let vnni = KernelRegistry.verificationConfigurations(gemm, isa: .avx512vnni, workload: fp16, machine: nil, vary: true)
        #expect(!vnni.isEmpty && !vnni.contains { $0["gsum"] == .name("int32") })
    }
}
