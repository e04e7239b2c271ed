import CHwloc
import Foundation

/// Owns one loaded hwloc topology. All raw hwloc pointer work in lowbit lives in this file.
///
/// hwloc allows concurrent read-only use of a loaded topology (queries and binding of the calling
/// thread), which is all this type exposes, hence `@unchecked Sendable`.
public final class HwlocTopology: @unchecked Sendable {
    private let handle: hwloc_topology_t

    /// Loads the topology of the machine this process runs on.
    public init() throws {
        var topology: hwloc_topology_t?
        guard hwloc_topology_init(&topology) == 0, let topology else {
            throw HwlocTopology.lastError("hwloc_topology_init")
        }
        if hwloc_topology_load(topology) != 0 {
            let error = HwlocTopology.lastError("hwloc_topology_load")
            hwloc_topology_destroy(topology)
            throw error
        }
        handle = topology
    }

    deinit {
        hwloc_topology_destroy(handle)
    }

    /// hwloc's run-time API version as "major.minor.revision" (the API version, which trails the release number).
    public static var runtimeAPIVersion: String {
        let v = hwloc_get_api_version()
        return "\(v >> 16).\((v >> 8) & 0xff).\(v & 0xff)"
    }

    // MARK: Snapshot

    /// The topology as a plain value.
    public func snapshot() -> Topology {
        let packages = objects(of: HWLOC_OBJ_PACKAGE).map { obj in
            Topology.Package(
                index: Int(obj.pointee.logical_index),
                vendor: info(obj, "CPUVendor"),
                model: info(obj, "CPUModel"),
                pus: Self.indices(obj.pointee.cpuset))
        }
        let numaNodes = objects(of: HWLOC_OBJ_NUMANODE).map { obj in
            Topology.NUMANode(
                index: Int(obj.pointee.os_index),
                memoryBytes: obj.pointee.attr.pointee.numanode.local_memory,
                pus: Self.indices(obj.pointee.cpuset))
        }
        let cores = objects(of: HWLOC_OBJ_CORE).map { obj in
            Topology.Core(index: Int(obj.pointee.logical_index), pus: Self.indices(obj.pointee.cpuset))
        }
        let pus = objects(of: HWLOC_OBJ_PU).map { Int($0.pointee.os_index) }.sorted()

        let cacheTypes: [hwloc_obj_type_t] = [
            HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L3CACHE, HWLOC_OBJ_L4CACHE,
            HWLOC_OBJ_L5CACHE, HWLOC_OBJ_L1ICACHE, HWLOC_OBJ_L2ICACHE, HWLOC_OBJ_L3ICACHE,
        ]
        var caches: [Topology.Cache] = []
        for type in cacheTypes {
            for obj in objects(of: type) {
                let attr = obj.pointee.attr.pointee.cache
                let kind: Topology.CacheKind
                switch attr.type {
                case HWLOC_OBJ_CACHE_DATA: kind = .data
                case HWLOC_OBJ_CACHE_INSTRUCTION: kind = .instruction
                default: kind = .unified
                }
                caches.append(
                    Topology.Cache(
                        level: Int(attr.depth), kind: kind, index: Int(obj.pointee.logical_index),
                        sizeBytes: attr.size, lineSize: Int(attr.linesize),
                        associativity: Int(attr.associativity),
                        pus: Self.indices(obj.pointee.cpuset)))
            }
        }
        return Topology(
            packages: packages, numaNodes: numaNodes, cores: cores, pus: pus, caches: caches,
            hwlocAPIVersion: Self.runtimeAPIVersion)
    }

    // MARK: Binding

    /// What the OS says it supports for binding, as hwloc reports it.
    public var bindingSupport: BindingSupport {
        guard let support = hwloc_topology_get_support(handle) else {
            return BindingSupport(setThread: false, getThread: false, setProcess: false, lastLocation: false)
        }
        let cpubind = support.pointee.cpubind.pointee
        return BindingSupport(
            setThread: cpubind.set_thisthread_cpubind != 0,
            getThread: cpubind.get_thisthread_cpubind != 0,
            setProcess: cpubind.set_thisproc_cpubind != 0,
            lastLocation: cpubind.get_thisthread_last_cpu_location != 0)
    }

    /// Binds the calling thread to `pus` (OS indices). Returns the OS's answer; throws only for requests
    /// that name PUs the machine does not have.
    public func bindCurrentThread(to pus: [Int]) throws -> BindingOutcome {
        let known = Set(snapshotPUs())
        guard !pus.isEmpty else { throw MachineError.invalidRequest("binding needs at least one PU") }
        if let bad = pus.first(where: { !known.contains($0) }) {
            throw MachineError.invalidRequest(
                "PU \(bad) does not exist; this machine has PUs \(known.sorted().map(String.init).joined(separator: ", "))")
        }
        let set = Self.bitmap(pus)
        defer { hwloc_bitmap_free(set) }

        if hwloc_set_cpubind(handle, set, lowbit_hwloc_cpubind_thread()) != 0 {
            let code = lowbit_errno()
            let reason: BindingOutcome.Refusal = code == ENOSYS ? .unsupported : (code == EXDEV ? .cannotEnforce : .failed)
            return BindingOutcome(
                requested: pus.sorted(), status: .refused(reason), errno: code,
                message: String(cString: strerror(code)), readBack: currentThreadBinding(),
                runningOn: lastCPULocation())
        }
        let readBack = currentThreadBinding()
        let honoured = readBack.map { $0 == pus.sorted() } ?? true
        return BindingOutcome(
            requested: pus.sorted(), status: honoured ? .honoured : .notReflected, errno: 0, message: nil,
            readBack: readBack, runningOn: lastCPULocation())
    }

    /// The calling thread's current binding, or nil when the OS cannot tell.
    public func currentThreadBinding() -> [Int]? {
        let set = hwloc_bitmap_alloc()
        defer { hwloc_bitmap_free(set) }
        guard hwloc_get_cpubind(handle, set, lowbit_hwloc_cpubind_thread()) == 0 else { return nil }
        return Self.indices(set)
    }

    /// The PU(s) the calling thread last ran on, or nil when the OS cannot tell.
    public func lastCPULocation() -> [Int]? {
        let set = hwloc_bitmap_alloc()
        defer { hwloc_bitmap_free(set) }
        guard hwloc_get_last_cpu_location(handle, set, lowbit_hwloc_cpubind_thread()) == 0 else { return nil }
        return Self.indices(set)
    }

    /// Binds the calling thread back to every PU of the machine.
    public func unbindCurrentThread() {
        guard let all = hwloc_topology_get_complete_cpuset(handle) else { return }
        _ = hwloc_set_cpubind(handle, all, lowbit_hwloc_cpubind_thread())
    }

    // MARK: Helpers

    private func snapshotPUs() -> [Int] { objects(of: HWLOC_OBJ_PU).map { Int($0.pointee.os_index) } }

    private func objects(of type: hwloc_obj_type_t) -> [hwloc_obj_t] {
        let count = hwloc_get_nbobjs_by_type(handle, type)
        guard count > 0 else { return [] }
        return (0..<UInt32(count)).compactMap { hwloc_get_obj_by_type(handle, type, $0) }
    }

    private func info(_ obj: hwloc_obj_t, _ name: String) -> String? {
        guard let value = hwloc_obj_get_info_by_name(obj, name) else { return nil }
        return String(cString: value)
    }

    private static func indices(_ set: hwloc_const_bitmap_t?) -> [Int] {
        guard let set else { return [] }
        var result: [Int] = []
        var index = hwloc_bitmap_first(set)
        while index >= 0 {
            result.append(Int(index))
            index = hwloc_bitmap_next(set, index)
        }
        return result
    }

    private static func bitmap(_ pus: [Int]) -> hwloc_bitmap_t {
        let set = hwloc_bitmap_alloc()!
        for pu in pus { hwloc_bitmap_set(set, UInt32(pu)) }
        return set
    }

    private static func lastError(_ call: String) -> MachineError {
        let code = lowbit_errno()
        return .hwloc(call: call, errno: code, message: String(cString: strerror(code)))
    }
}

/// Which binding operations the OS offers, per hwloc.
public struct BindingSupport: Codable, Sendable, Equatable {
    public var setThread: Bool
    public var getThread: Bool
    public var setProcess: Bool
    public var lastLocation: Bool
}

/// The result of asking the OS to bind the calling thread.
public struct BindingOutcome: Codable, Sendable, Equatable {
    public enum Refusal: String, Codable, Sendable {
        /// ENOSYS: the OS has no such binding.
        case unsupported
        /// EXDEV: the OS cannot enforce this set (e.g. a set that spans what it can bind).
        case cannotEnforce
        /// Any other error.
        case failed
    }

    public enum Status: Codable, Sendable, Equatable {
        /// The call succeeded and reading the binding back gives the requested set.
        case honoured
        /// The call succeeded but the binding read back differs from the request.
        case notReflected
        /// The call failed.
        case refused(Refusal)
    }

    public var requested: [Int]
    public var status: Status
    public var errno: Int32
    public var message: String?
    public var readBack: [Int]?
    public var runningOn: [Int]?

    public var honoured: Bool { status == .honoured }
}
