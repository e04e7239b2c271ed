import Model

/// Atom keeps the embedding and lm_head in FP16. The quantized engines run lm_head with FP16 weights
/// (gemm-f16) and the simulation rounds it the same way, so both see the same weights.
extension Matrix {
    /// The values rounded to fp16 (round to nearest even) and widened back to fp32.
    public var halfRounded: Matrix {
        var m = self
        m.values = values.map { Float(Float16($0)) }
        return m
    }
}
