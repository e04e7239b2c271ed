import CPAPI
import Foundation

/// The process-wide PAPI library. All raw PAPI calls in lowbit live in this file.
///
/// PAPI is initialized once per process; event sets belong to the thread that creates them, so the
/// event-set type below is not `Sendable`.
public enum PAPI {
    /// What initialization found: the library version and the CPU component, or why it failed.
    public struct Status: Codable, Sendable, Equatable {
        public var initialized: Bool
        public var version: String?
        public var componentName: String?
        /// Counters the CPU component claims (a VM may claim counters it cannot program).
        public var hardwareCounters: Int
        public var multiplexCounters: Int
        /// Why PAPI or its CPU component is unusable, when it is.
        public var problem: String?
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cachedStatus: Status?

    /// Initializes PAPI (once) and reports the outcome. Never throws: a failed initialization is a status.
    public static var status: Status {
        lock.lock()
        defer { lock.unlock() }
        if let cachedStatus { return cachedStatus }
        let status = initialize()
        cachedStatus = status
        return status
    }

    private static func initialize() -> Status {
        var status = Status(
            initialized: false, version: nil, componentName: nil, hardwareCounters: 0, multiplexCounters: 0,
            problem: nil)
        let version = PAPI_library_init(lowbit_papi_ver_current())
        guard version == lowbit_papi_ver_current() else {
            status.problem =
                version > 0
                ? "PAPI header/library version mismatch (library \(describe(version: version)))"
                : "PAPI_library_init failed: \(message(version))"
            return status
        }
        status.initialized = true
        status.version = describe(version: lowbit_papi_version())
        // Event sets are per thread; PAPI needs a thread id function to keep them apart.
        let threadInit = PAPI_thread_init { UInt(pthread_self()) }
        if threadInit != PAPI_OK {
            status.problem = "PAPI_thread_init failed: \(message(threadInit))"
        }
        if let info = PAPI_get_component_info(0) {
            status.componentName = fixedString(info.pointee.name)
            status.hardwareCounters = Int(info.pointee.num_cntrs)
            status.multiplexCounters = Int(info.pointee.num_mpx_cntrs)
            if info.pointee.disabled != 0 {
                status.problem = "PAPI component \(status.componentName ?? "0") is disabled: "
                    + fixedString(info.pointee.disabled_reason)
            }
        }
        return status
    }

    /// PAPI's own text for a return code.
    public static func message(_ code: Int32) -> String {
        guard let text = PAPI_strerror(code) else { return "unknown PAPI error" }
        return String(cString: text)
    }

    static func describe(version v: Int32) -> String {
        "\(lowbit_papi_version_major(v)).\(lowbit_papi_version_minor(v)).\(lowbit_papi_version_revision(v)).\(lowbit_papi_version_increment(v))"
    }

    private static func fixedString<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// PAPI codes for the preset events lowbit names, from the shim (the presets are macros).
    static let presetCodes: [String: Int32] = [
        "PAPI_TOT_CYC": lowbit_papi_tot_cyc(), "PAPI_TOT_INS": lowbit_papi_tot_ins(),
        "PAPI_L1_DCM": lowbit_papi_l1_dcm(), "PAPI_L2_DCM": lowbit_papi_l2_dcm(),
        "PAPI_L3_TCM": lowbit_papi_l3_tcm(), "PAPI_BR_MSP": lowbit_papi_br_msp(),
        "PAPI_VEC_INS": lowbit_papi_vec_ins(), "PAPI_VEC_SP": lowbit_papi_vec_sp(),
        "PAPI_VEC_DP": lowbit_papi_vec_dp(),
    ]

    /// The event code for a preset or native event name.
    static func code(for name: String) throws -> Int32 {
        if let preset = presetCodes[name] { return preset }
        var code: Int32 = 0
        let rc = name.withCString { PAPI_event_name_to_code($0, &code) }
        guard rc == PAPI_OK else { throw MachineError.papi(call: "PAPI_event_name_to_code(\(name))", code: rc, message: message(rc)) }
        return code
    }

    static func check(_ rc: Int32, _ call: @autoclosure () -> String) throws {
        if rc != PAPI_OK { throw MachineError.papi(call: call(), code: rc, message: message(rc)) }
    }
}

/// One PAPI event set, owned by the thread that created it. Destroyed on deinit.
final class PAPIEventSet {
    private var handle: Int32 = PAPI_NULL
    private(set) var codes: [Int32] = []
    let multiplexed: Bool

    init(multiplexed: Bool) throws {
        self.multiplexed = multiplexed
        try PAPI.check(PAPI_create_eventset(&handle), "PAPI_create_eventset")
        if multiplexed {
            try PAPI.check(PAPI_multiplex_init(), "PAPI_multiplex_init")
            // Multiplexing needs the event set bound to a component first.
            try PAPI.check(PAPI_assign_eventset_component(handle, 0), "PAPI_assign_eventset_component")
            try PAPI.check(PAPI_set_multiplex(handle), "PAPI_set_multiplex")
        }
    }

    deinit {
        var state: Int32 = 0
        if PAPI_state(handle, &state) == PAPI_OK, state & PAPI_RUNNING != 0 {
            var scratch = [Int64](repeating: 0, count: max(codes.count, 1))
            _ = PAPI_stop(handle, &scratch)
        }
        _ = PAPI_cleanup_eventset(handle)
        _ = PAPI_destroy_eventset(&handle)
    }

    func add(_ code: Int32, name: String) throws {
        try PAPI.check(PAPI_add_event(handle, code), "PAPI_add_event(\(name))")
        codes.append(code)
    }

    func start() throws { try PAPI.check(PAPI_start(handle), "PAPI_start") }

    func stop() throws -> [Int64] {
        var values = [Int64](repeating: 0, count: max(codes.count, 1))
        try PAPI.check(PAPI_stop(handle, &values), "PAPI_stop")
        return Array(values.prefix(codes.count))
    }
}
