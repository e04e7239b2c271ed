import Model

/// Continuous batching with greedy sampling over one `Engine`.
///
/// Requests wait in arrival order; before every step, waiting requests join while fewer than
/// `maxBatch` run (and the cache has a slot). A step runs, as one batch, the whole prompt of every
/// request that just joined (its prefill) and the last sampled token of every running request; each
/// then samples its next token (argmax, lowest id on ties, as `LlamaReference.generate`). A request
/// leaves, releasing its pages, as soon as it has its `maxNewTokens`; new requests may be submitted
/// between any two steps.
public final class ContinuousBatcher {
    /// A generation request: a prompt and how many tokens to generate.
    public struct Request: Sendable {
        public var prompt: [Int]
        public var maxNewTokens: Int

        public init(prompt: [Int], maxNewTokens: Int) {
            self.prompt = prompt
            self.maxNewTokens = maxNewTokens
        }
    }

    /// What one step produced for one request.
    public struct Event: Sendable, Equatable {
        public var request: Int
        public var token: Int
        /// True when this was the request's last token (it has left the batch).
        public var finished: Bool
    }

    private struct Running {
        let id: Int
        let sequence: SequenceID
        var generated: [Int]
        let maxNewTokens: Int
        var pendingPrompt: [Int]?
    }

    public let engine: Engine
    public let maxBatch: Int
    private var nextID = 0
    private var waiting: [(id: Int, request: Request)] = []
    private var running: [Running] = []
    /// Generated tokens of every finished request, by request id.
    public private(set) var finished: [Int: [Int]] = [:]
    /// Steps run so far.
    public private(set) var steps = 0

    public init(engine: Engine, maxBatch: Int? = nil) throws {
        let limit = maxBatch ?? engine.maxSequences
        guard limit >= 1 else { throw EngineError.invalidInput("maxBatch must be at least 1, got \(limit)") }
        self.engine = engine
        self.maxBatch = min(limit, engine.maxSequences)
    }

    /// Queues a request; returns its id.
    @discardableResult
    public func submit(_ request: Request) throws -> Int {
        guard !request.prompt.isEmpty else { throw EngineError.invalidInput("a request needs a non-empty prompt") }
        guard request.maxNewTokens >= 0 else { throw EngineError.invalidInput("maxNewTokens must be 0 or more, got \(request.maxNewTokens)") }
        guard request.prompt.count + request.maxNewTokens <= engine.maxContext + 1 else {
            throw EngineError.invalidInput(
                "a prompt of \(request.prompt.count) tokens plus \(request.maxNewTokens) new ones exceeds the engine's context of \(engine.maxContext)")
        }
        let id = nextID
        nextID += 1
        if request.maxNewTokens == 0 {
            finished[id] = []
        } else {
            waiting.append((id, request))
        }
        return id
    }

    /// Requests waiting to join, and running.
    public var waitingCount: Int { waiting.count }
    public var runningCount: Int { running.count }
    public var isIdle: Bool { waiting.isEmpty && running.isEmpty }

    /// Admits waiting requests, runs one engine step, samples, retires finished requests.
    @discardableResult
    public func step() throws -> [Event] {
        while running.count < maxBatch, !waiting.isEmpty {
            let (id, request) = waiting.removeFirst()
            let sequence = try engine.makeSequence()
            running.append(Running(id: id, sequence: sequence, generated: [], maxNewTokens: request.maxNewTokens, pendingPrompt: request.prompt))
        }
        guard !running.isEmpty else { return [] }
        let inputs = running.map { r in (sequence: r.sequence, tokens: r.pendingPrompt ?? [r.generated.last!]) }
        let logits = try engine.step(inputs)
        steps += 1
        var events: [Event] = []
        var still: [Running] = []
        for (i, var r) in running.enumerated() {
            let token = LlamaReference.argmax(logits[i].values)
            r.pendingPrompt = nil
            r.generated.append(token)
            let done = r.generated.count >= r.maxNewTokens
            events.append(Event(request: r.id, token: token, finished: done))
            if done {
                finished[r.id] = r.generated
                engine.release(r.sequence)
            } else {
                still.append(r)
            }
        }
        running = still
        return events
    }

    /// Steps until every submitted request has finished; returns the generated tokens by request id.
    public func runToCompletion() throws -> [Int: [Int]] {
        while !isIdle { try step() }
        return finished
    }
}

extension Engine {
    /// Greedy generation of one prompt: prefill, then `steps` tokens (the same contract as
    /// `LlamaReference.generate`).
    public func generate(prompt: [Int], steps: Int) throws -> [Int] {
        let batcher = try ContinuousBatcher(engine: self, maxBatch: 1)
        let id = try batcher.submit(.init(prompt: prompt, maxNewTokens: steps))
        return try batcher.runToCompletion()[id] ?? []
    }
}
