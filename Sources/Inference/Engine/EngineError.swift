/// What can go wrong building or running the inference engine. Every case carries a message that
/// names the input at fault and, where there is one, the fix.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// Bad input from the caller: an unknown mode, a token outside the vocabulary, an empty prompt...
    case invalidInput(String)
    /// A model this engine cannot run as asked (e.g. a K that no Atom outlier split fits).
    case unsupportedModel(String)
    /// A kernel could not be configured, compiled or loaded for this machine.
    case kernelUnavailable(family: String, workload: String, reason: String)
    /// The KV cache has no free page or sequence slot left.
    case cacheFull(String)

    public var description: String {
        switch self {
        case .invalidInput(let m): "invalid input: \(m)"
        case .unsupportedModel(let m): "unsupported model: \(m)"
        case let .kernelUnavailable(family, workload, reason): "no runnable \(family) kernel for \(workload): \(reason)"
        case .cacheFull(let m): "KV cache full: \(m)"
        }
    }
}
