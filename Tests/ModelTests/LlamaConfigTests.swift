import Foundation
import Testing
@testable import Model

@Suite("Llama config.json")
struct LlamaConfigTests {
    /// Llama-2-7b's config.json as Hugging Face ships it.
    static let llama2 = """
        {
          "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
          "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
          "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
          "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
          "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "float16",
          "transformers_version": "4.31.0.dev0", "use_cache": true, "vocab_size": 32000
        }
        """

    @Test func decodesAHuggingFaceConfig() throws {
        let c = try LlamaConfig.decode(Data(Self.llama2.utf8))
        #expect(c.hiddenSize == 4096 && c.intermediateSize == 11008 && c.numHiddenLayers == 32 && c.vocabSize == 32000)
        #expect(c.numAttentionHeads == 32 && c.numKeyValueHeads == 32 && c.headDim == 128)
        #expect(c.rmsNormEps == 1e-5 && c.ropeTheta == 10000 && c.maxPositionEmbeddings == 4096)
        #expect(!c.tieWordEmbeddings && c.torchDtype == "float16" && c.architectures == ["LlamaForCausalLM"])
        #expect(c == LlamaConfig.llama7B(), "the llama-7b preset is Llama-2-7b's shape")
        #expect(c.parameterCount == 6_738_415_616, "Llama-2-7b's parameter count")
    }

    @Test func fillsDefaultsForMissingOptionalKeys() throws {
        let json = #"{"hidden_size": 512, "intermediate_size": 1024, "num_attention_heads": 8, "num_hidden_layers": 3, "vocab_size": 1000}"#
        let c = try LlamaConfig.decode(Data(json.utf8))
        #expect(c.numKeyValueHeads == 8, "num_key_value_heads defaults to num_attention_heads")
        #expect(c.headDim == 64 && c.ropeTheta == 10000 && c.rmsNormEps == 1e-6)
        #expect(!c.tieWordEmbeddings && c.maxPositionEmbeddings == 2048 && c.torchDtype == nil && c.architectures == nil)
    }

    @Test func readsGQAAndExplicitKeys() throws {
        let json = #"{"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32, "num_key_value_heads": 4, "num_hidden_layers": 22, "vocab_size": 32000, "rope_theta": 500000, "tie_word_embeddings": true, "head_dim": 64}"#
        let c = try LlamaConfig.decode(Data(json.utf8))
        #expect(c.numKeyValueHeads == 4 && c.groupSize == 8 && c.keyValueWidth == 256 && c.ropeTheta == 500_000 && c.tieWordEmbeddings)
    }

    @Test func encodesBackToTheSameConfig() throws {
        for c in [LlamaConfig.tiny(), LlamaConfig.llama7B(layers: 2), microConfig()] {
            let data = try c.encoded()
            #expect(try LlamaConfig.decode(data) == c)
            let text = String(decoding: data, as: UTF8.self)
            #expect(text.contains("\"num_key_value_heads\"") && text.contains("\"rope_theta\"") && text.contains("\"head_dim\""))
        }
    }

    @Test func rejectsInvalidConfigs() {
        func message(_ json: String) -> String? {
            modelError { _ = try LlamaConfig.decode(Data(json.utf8)) }?.description
        }
        let base = #""intermediate_size": 64, "num_hidden_layers": 1, "vocab_size": 10"#
        #expect(message(#"{"hidden_size": 100, "num_attention_heads": 3, "# + base + "}")?.contains("not divisible by num_attention_heads") == true)
        #expect(message(#"{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3, "# + base + "}")?.contains("not divisible by num_key_value_heads") == true)
        #expect(message(#"{"hidden_size": 0, "num_attention_heads": 4, "# + base + "}")?.contains("hidden_size is 0") == true)
        #expect(message(#"{"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": -1, "vocab_size": 10}"#)?.contains("num_hidden_layers is -1") == true)
        #expect(message(#"{"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 1}"#)?.contains("required key vocab_size is missing") == true)
        #expect(message(#"{"hidden_size": "big", "num_attention_heads": 4, "# + base + "}")?.contains("hidden_size") == true)
        #expect(message(#"{"hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"type": "linear", "factor": 2.0}, "# + base + "}")?.contains("rope_scaling (linear)") == true)
        #expect(message(#"{"hidden_size": 64, "num_attention_heads": 4, "hidden_act": "gelu", "# + base + "}")?.contains("hidden_act is gelu") == true)
        #expect(message("this is not json")?.contains("not valid JSON") == true)
        #expect(errorCase { _ = try LlamaConfig.preset(named: "gpt-5") } == "invalidConfig")
        #expect(errorCase { _ = try LlamaConfig.load(from: URL(fileURLWithPath: "/nonexistent-dir")) } == "invalidConfig")
    }

    @Test func presets() throws {
        let tiny = try LlamaConfig.preset(named: "tiny")
        #expect(tiny.numHiddenLayers == 2 && tiny.hiddenSize == 256 && tiny.headDim == 64 && tiny.numKeyValueHeads == 2)
        let seven = try LlamaConfig.preset(named: "llama-7b", layers: 2)
        #expect(seven.numHiddenLayers == 2 && seven.hiddenSize == 4096 && seven.intermediateSize == 11008 && seven.vocabSize == 32000)
        #expect(seven.parametersPerLayer == 202_383_360)
    }
}
