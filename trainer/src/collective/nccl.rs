//! NCCL communicators for GPU ranks: one [`NcclCollective`] per rank and device.
//!
//! Rank 0 creates an [`NcclId`]; its 128 bytes are handed to the other ranks (copied between
//! threads by [`nccl_group`], or passed through a file between processes), and every rank then
//! joins with [`NcclCollective::from_rank`]. Hierarchical groups are sub-communicators made by
//! `ncclCommSplit` ([`NcclCollective::split`], [`NcclCollective::hierarchical`]).
//!
//! The libraries are loaded at run time, so this compiles and its checks run on machines
//! without CUDA: there every constructor returns [`CollectiveError::Gpu`] with the probe's reason.

use super::gpu_probe::{self, GpuInfo};
use super::{Collective, CollectiveError, Payload};
use cudarc::driver::{CudaContext, CudaStream, DevicePtrMut, DeviceRepr, DriverError};
use cudarc::nccl::sys;
use std::collections::HashSet;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;

/// NCCL release from which `ncclCommSplit` exists (2.18.0).
pub const MIN_NCCL_FOR_SPLIT: i32 = 21800;

/// `NCCL_SPLIT_NOCOLOR`: the rank joins no communicator of the split.
const SPLIT_NO_COLOR: c_int = -1;

/// Bytes of an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
pub const NCCL_ID_BYTES: usize = 128;

/// The rendezvous token of one communicator: created by rank 0, handed to every other rank.
#[derive(Clone, PartialEq, Eq)]
pub struct NcclId([u8; NCCL_ID_BYTES]);

impl std::fmt::Debug for NcclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id holds rank 0's address; the first bytes are enough to tell ids apart.
        write!(f, "NcclId({:02x?}..)", &self.0[..8])
    }
}

impl NcclId {
    /// Creates a fresh id (rank 0 does this once per communicator).
    pub fn new() -> Result<Self, CollectiveError> {
        gpu_probe::probe().info()?;
        let mut id = sys::ncclUniqueId {
            internal: [0; NCCL_ID_BYTES],
        };
        // SAFETY: `id` is a valid out-pointer; NCCL is known to load (probe above).
        nccl_check("ncclGetUniqueId", unsafe { sys::ncclGetUniqueId(&mut id) })?;
        Ok(Self::from_sys(&id))
    }

    /// Rebuilds an id from the bytes rank 0 sent.
    pub fn from_bytes(bytes: [u8; NCCL_ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// The bytes to send to the other ranks.
    pub fn as_bytes(&self) -> &[u8; NCCL_ID_BYTES] {
        &self.0
    }

    // `c_char` is signed on x86-64 and unsigned on aarch64: go through bytes, bit for bit.
    fn from_sys(id: &sys::ncclUniqueId) -> Self {
        Self(id.internal.map(|c| c as u8))
    }

    fn to_sys(&self) -> sys::ncclUniqueId {
        sys::ncclUniqueId {
            internal: self.0.map(|b| b as std::ffi::c_char),
        }
    }
}

/// The NCCL element type a payload travels in.
pub fn nccl_dtype(data: &Payload<'_>) -> sys::ncclDataType_t {
    match data {
        Payload::F32(_) => sys::ncclDataType_t::ncclFloat32,
        Payload::F16(_) => sys::ncclDataType_t::ncclFloat16,
        Payload::Bf16(_) => sys::ncclDataType_t::ncclBfloat16,
    }
}

/// Checks the device list of a one-process group: at least one device, none twice, all present.
pub fn check_devices(devices: &[usize], device_count: usize) -> Result<(), CollectiveError> {
    if devices.is_empty() {
        return Err(CollectiveError::Invalid(
            "an NCCL group needs at least one device".into(),
        ));
    }
    let mut seen = HashSet::new();
    for &d in devices {
        if !seen.insert(d) {
            return Err(CollectiveError::Invalid(format!(
                "device {d} is listed twice (NCCL runs one rank per device)"
            )));
        }
        if d >= device_count {
            return Err(CollectiveError::Invalid(format!(
                "device {d} does not exist: this machine has {device_count} CUDA device(s)"
            )));
        }
    }
    Ok(())
}

fn check_rank(rank: usize, world: usize) -> Result<(), CollectiveError> {
    if world == 0 || rank >= world || world > c_int::MAX as usize {
        return Err(CollectiveError::Invalid(format!(
            "rank {rank} of a communicator of {world} ranks"
        )));
    }
    Ok(())
}

/// Colors and keys of the two `ncclCommSplit` calls that build a hierarchy of groups of `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HierarchySplit {
    /// Group of this rank: ranks `color * k .. (color + 1) * k`.
    pub group_color: u32,
    /// Rank inside the group; 0 is the group's leader.
    pub group_key: u32,
    /// `Some(0)` for group leaders (they form the leaders' communicator), `None` otherwise.
    pub leader_color: Option<u32>,
    /// Rank among the leaders (the group index).
    pub leader_key: u32,
}

/// The split of `rank` of `world` into groups of `k` consecutive ranks and their leaders.
pub fn hierarchy_split(
    rank: usize,
    world: usize,
    k: usize,
) -> Result<HierarchySplit, CollectiveError> {
    check_rank(rank, world)?;
    if k == 0 || !world.is_multiple_of(k) {
        return Err(CollectiveError::Invalid(format!(
            "group size {k} must be at least 1 and divide the world size {world}"
        )));
    }
    let (group, inside) = ((rank / k) as u32, (rank % k) as u32);
    Ok(HierarchySplit {
        group_color: group,
        group_key: inside,
        leader_color: (inside == 0).then_some(0),
        leader_key: group,
    })
}

/// Turns an NCCL status into a `Result`, with NCCL's own description.
fn nccl_check(call: &str, status: sys::ncclResult_t) -> Result<(), CollectiveError> {
    if status == sys::ncclResult_t::ncclSuccess {
        return Ok(());
    }
    // SAFETY: NCCL returns a static, NUL-terminated string for every status.
    let text = unsafe { CStr::from_ptr(sys::ncclGetErrorString(status)) };
    Err(nccl_error(call, status, &text.to_string_lossy()))
}

fn nccl_error(call: &str, status: sys::ncclResult_t, text: &str) -> CollectiveError {
    CollectiveError::Gpu(format!("{call}: {status:?}: {text}"))
}

/// Like [`nccl_check`], adding the communicator's last detailed error message.
fn nccl_check_comm(
    call: &str,
    comm: sys::ncclComm_t,
    status: sys::ncclResult_t,
) -> Result<(), CollectiveError> {
    nccl_check(call, status).map_err(|e| {
        // SAFETY: `comm` is a live communicator; NCCL returns a NUL-terminated string.
        let last = unsafe { CStr::from_ptr(sys::ncclGetLastError(comm)) };
        let last = last.to_string_lossy();
        match e {
            CollectiveError::Gpu(m) if !last.is_empty() => {
                CollectiveError::Gpu(format!("{m} ({last})"))
            }
            other => other,
        }
    })
}

fn cuda(call: &'static str) -> impl FnOnce(DriverError) -> CollectiveError {
    move |e| CollectiveError::Gpu(format!("{call}: {e}"))
}

/// An owned NCCL communicator handle, destroyed on drop.
struct Comm(sys::ncclComm_t);

impl Drop for Comm {
    fn drop(&mut self) {
        // Destroy (which finalises pending work) rather than abort, so in-flight reductions
        // complete. Errors here cannot be returned; they are logged.
        // SAFETY: the handle is owned and live; nothing uses it after this.
        let status = unsafe { sys::ncclCommDestroy(self.0) };
        if let Err(e) = nccl_check("ncclCommDestroy", status) {
            tracing::warn!("{e}");
        }
    }
}

/// One rank's NCCL communicator on one device, with the stream its collectives run on.
pub struct NcclCollective {
    comm: Comm,
    stream: Arc<CudaStream>,
    device: usize,
    rank: usize,
    world: usize,
    nccl_version_code: i32,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent. The handle moves between threads (each rank runs on its own thread) but is not
// `Sync`, and every collective call takes `&mut self`, so calls never overlap.
unsafe impl Send for NcclCollective {}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("device", &self.device)
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish()
    }
}

/// Opens device `device` and a stream of its own for the collectives.
fn open_stream(info: &GpuInfo, device: usize) -> Result<Arc<CudaStream>, CollectiveError> {
    check_devices(&[device], info.devices.len())?;
    let ctx = CudaContext::new(device).map_err(cuda("cuDevicePrimaryCtxRetain"))?;
    // Not the legacy default stream, which would serialise the reductions with all other work.
    ctx.new_stream().map_err(cuda("cuStreamCreate"))
}

impl NcclCollective {
    /// Joins the communicator `id` as `rank` of `world` on CUDA device `device`.
    ///
    /// Blocks until all `world` ranks have joined.
    pub fn from_rank(
        device: usize,
        rank: usize,
        world: usize,
        id: &NcclId,
    ) -> Result<Self, CollectiveError> {
        check_rank(rank, world)?;
        let info = gpu_probe::probe().info()?;
        let stream = open_stream(info, device)?;
        Self::init_rank(stream, device, rank, world, id, info.nccl_version_code)
    }

    fn init_rank(
        stream: Arc<CudaStream>,
        device: usize,
        rank: usize,
        world: usize,
        id: &NcclId,
        nccl_version_code: i32,
    ) -> Result<Self, CollectiveError> {
        // NCCL picks the device from the calling thread's current context.
        stream
            .context()
            .bind_to_thread()
            .map_err(cuda("cuCtxSetCurrent"))?;
        let mut comm = ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; rank < world <= c_int::MAX (checked).
        let status =
            unsafe { sys::ncclCommInitRank(&mut comm, world as c_int, id.to_sys(), rank as c_int) };
        nccl_check("ncclCommInitRank", status)?;
        Ok(Self {
            comm: Comm(comm),
            stream,
            device,
            rank,
            world,
            nccl_version_code,
        })
    }

    /// CUDA device of this rank.
    pub fn device(&self) -> usize {
        self.device
    }

    /// The stream this rank's collectives are queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Splits the communicator: ranks with the same `color` form a new one, ordered by `key`.
    ///
    /// Every rank of this communicator must call it (collectively, in the same order). A rank
    /// passing `None` joins no new communicator and gets `Ok(None)`.
    pub fn split(&self, color: Option<u32>, key: u32) -> Result<Option<Self>, CollectiveError> {
        if self.nccl_version_code < MIN_NCCL_FOR_SPLIT {
            return Err(CollectiveError::Gpu(format!(
                "communicator split needs NCCL 2.18 or later; this is NCCL {}",
                gpu_probe::nccl_version_string(self.nccl_version_code)
            )));
        }
        let color = match color {
            None => SPLIT_NO_COLOR,
            Some(c) => c_int::try_from(c)
                .map_err(|_| CollectiveError::Invalid(format!("split color {c} is too large")))?,
        };
        let key = c_int::try_from(key)
            .map_err(|_| CollectiveError::Invalid(format!("split key {key} is too large")))?;
        self.bind()?;
        let mut new = ptr::null_mut();
        // SAFETY: live communicator, valid out-pointer; a null config keeps the parent's.
        let status =
            unsafe { sys::ncclCommSplit(self.comm.0, color, key, &mut new, ptr::null_mut()) };
        nccl_check_comm("ncclCommSplit", self.comm.0, status)?;
        if new.is_null() {
            return Ok(None);
        }
        let comm = Comm(new);
        let (mut world, mut rank) = (0, 0);
        // SAFETY: `comm` is the live communicator just created; valid out-pointers.
        unsafe {
            nccl_check("ncclCommCount", sys::ncclCommCount(comm.0, &mut world))?;
            nccl_check("ncclCommUserRank", sys::ncclCommUserRank(comm.0, &mut rank))?;
        }
        Ok(Some(Self {
            comm,
            stream: self.stream.clone(),
            device: self.device,
            rank: rank as usize,
            world: world as usize,
            nccl_version_code: self.nccl_version_code,
        }))
    }

    /// Builds the groups of `k` consecutive ranks and the leaders' communicator (two splits).
    ///
    /// Every rank must call it with the same `k`.
    pub fn hierarchical(&self, k: usize) -> Result<NcclHierarchical, CollectiveError> {
        let plan = hierarchy_split(self.rank, self.world, k)?;
        let group = self
            .split(Some(plan.group_color), plan.group_key)?
            .ok_or_else(|| {
                CollectiveError::Gpu("ncclCommSplit gave a group no communicator".into())
            })?;
        let leaders = self.split(plan.leader_color, plan.leader_key)?;
        if group.world != k || leaders.as_ref().is_some_and(|l| l.world != self.world / k) {
            return Err(CollectiveError::Gpu(format!(
                "ncclCommSplit built groups of {} ranks, expected {k}",
                group.world
            )));
        }
        Ok(NcclHierarchical {
            rank: self.rank,
            world: self.world,
            group,
            leaders,
        })
    }

    fn bind(&self) -> Result<(), CollectiveError> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(cuda("cuCtxSetCurrent"))
    }

    /// Queues an in-place sum over all ranks of `count` elements at `buf`.
    fn queue_all_reduce(
        &self,
        buf: *mut c_void,
        count: usize,
        dtype: sys::ncclDataType_t,
    ) -> Result<(), CollectiveError> {
        // SAFETY: `buf` holds `count` elements of `dtype` on this rank's device, alive until the
        // stream is synchronised by the caller.
        let status = unsafe {
            sys::ncclAllReduce(
                buf,
                buf,
                count,
                dtype,
                sys::ncclRedOp_t::ncclSum,
                self.comm.0,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        };
        nccl_check_comm("ncclAllReduce", self.comm.0, status)
    }

    /// Queues an in-place sum of all ranks' buffers into rank `root`'s.
    fn queue_reduce(
        &self,
        buf: *mut c_void,
        count: usize,
        dtype: sys::ncclDataType_t,
        root: c_int,
    ) -> Result<(), CollectiveError> {
        // SAFETY: as in `queue_all_reduce`.
        let status = unsafe {
            sys::ncclReduce(
                buf,
                buf,
                count,
                dtype,
                sys::ncclRedOp_t::ncclSum,
                root,
                self.comm.0,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        };
        nccl_check_comm("ncclReduce", self.comm.0, status)
    }

    /// Queues an in-place copy of rank `root`'s buffer to every rank.
    fn queue_broadcast(
        &self,
        buf: *mut c_void,
        count: usize,
        dtype: sys::ncclDataType_t,
        root: c_int,
    ) -> Result<(), CollectiveError> {
        // SAFETY: as in `queue_all_reduce`.
        let status = unsafe {
            sys::ncclBroadcast(
                buf,
                buf,
                count,
                dtype,
                root,
                self.comm.0,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        };
        nccl_check_comm("ncclBroadcast", self.comm.0, status)
    }
}

/// Runs `queue` on a device copy of `host` and copies the result back.
///
/// This stages host buffers (the CPU trainer's gradients) through device memory: copy in, reduce,
/// copy out. The GPU trainer keeps its gradients on the device and queues the same reductions on
/// them directly, without the two copies.
fn staged<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    host: &mut [T],
    queue: impl FnOnce(*mut c_void, usize) -> Result<(), CollectiveError>,
) -> Result<(), CollectiveError> {
    if host.is_empty() {
        return Ok(());
    }
    stream
        .context()
        .bind_to_thread()
        .map_err(cuda("cuCtxSetCurrent"))?;
    let mut dev = stream.clone_htod(host).map_err(cuda("cuMemcpyHtoD"))?;
    {
        let (ptr, _sync) = dev.device_ptr_mut(stream);
        queue(ptr as *mut c_void, host.len())?;
    }
    stream
        .memcpy_dtoh(&dev, host)
        .map_err(cuda("cuMemcpyDtoH"))?;
    stream.synchronize().map_err(cuda("cuStreamSynchronize"))
}

/// Stages any payload through `stream` and runs `queue(buffer, count, dtype)` on it.
fn staged_payload(
    stream: &Arc<CudaStream>,
    data: Payload<'_>,
    queue: impl FnOnce(*mut c_void, usize, sys::ncclDataType_t) -> Result<(), CollectiveError>,
) -> Result<(), CollectiveError> {
    let dtype = nccl_dtype(&data);
    match data {
        Payload::F32(b) => staged(stream, b, |p, n| queue(p, n, dtype)),
        Payload::F16(b) => staged(stream, b, |p, n| queue(p, n, dtype)),
        Payload::Bf16(b) => staged(stream, b, |p, n| queue(p, n, dtype)),
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    /// `ncclAllReduce` with `ncclSum` in the payload's own element type.
    ///
    /// NCCL cannot see a length or type mismatch between ranks (it would hang or read past the
    /// buffer); callers pass the same sequence of buffers on every rank, as the trait requires.
    fn all_reduce(&mut self, data: Payload<'_>) -> Result<(), CollectiveError> {
        let stream = self.stream.clone();
        staged_payload(&stream, data, |buf, n, dtype| {
            self.queue_all_reduce(buf, n, dtype)
        })
    }
}

/// One rank's view of a two-level hierarchy: its group of `k` ranks and, for group leaders, the
/// communicator of all leaders.
#[derive(Debug)]
pub struct NcclHierarchical {
    rank: usize,
    world: usize,
    group: NcclCollective,
    leaders: Option<NcclCollective>,
}

impl NcclHierarchical {
    /// This rank's group communicator (rank 0 of it is the leader).
    pub fn group(&self) -> &NcclCollective {
        &self.group
    }

    /// The leaders' communicator, on group leaders only.
    pub fn leaders(&self) -> Option<&NcclCollective> {
        self.leaders.as_ref()
    }
}

impl Collective for NcclHierarchical {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    /// Reduce inside the group to its leader, all-reduce among leaders, broadcast in the group.
    fn all_reduce(&mut self, data: Payload<'_>) -> Result<(), CollectiveError> {
        let stream = self.group.stream.clone();
        let (group, leaders) = (&self.group, self.leaders.as_ref());
        // All three steps are queued on the one stream of this rank, so each starts when the
        // previous has finished on this device; NCCL orders them across ranks.
        staged_payload(&stream, data, |buf, n, dtype| {
            group.queue_reduce(buf, n, dtype, 0)?;
            if let Some(leaders) = leaders {
                leaders.queue_all_reduce(buf, n, dtype)?;
            }
            group.queue_broadcast(buf, n, dtype, 0)
        })
    }
}

/// One communicator over `devices`, one rank per device (rank i on `devices[i]`), for ranks that
/// are threads of this process.
///
/// Rank 0's id is copied to the other ranks, which join on threads of their own (joining blocks
/// until all ranks are there). Drop the ranks each on its own thread, or all together, since
/// destroying a communicator waits for its pending work.
pub fn nccl_group(devices: &[usize]) -> Result<Vec<NcclCollective>, CollectiveError> {
    check_devices(devices, usize::MAX)?;
    let info = gpu_probe::probe().info()?;
    check_devices(devices, info.devices.len())?;
    // Open every device before any rank starts joining: a rank that failed before joining
    // would leave the others waiting for it forever.
    let streams = devices
        .iter()
        .map(|&d| open_stream(info, d))
        .collect::<Result<Vec<_>, _>>()?;
    let id = NcclId::new()?;
    let world = devices.len();
    let joined: Vec<Result<NcclCollective, CollectiveError>> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .zip(devices)
            .enumerate()
            .map(|(rank, (stream, &device))| {
                let id = id.clone();
                s.spawn(move || {
                    NcclCollective::init_rank(
                        stream,
                        device,
                        rank,
                        world,
                        &id,
                        info.nccl_version_code,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CollectiveError::Gpu("a rank panicked while joining".into()))
                })
            })
            .collect()
    });
    joined.into_iter().collect()
}

/// Runs `f` on every rank at once, each on its own thread, and returns the results in rank order.
///
/// NCCL calls block until all ranks of the communicator take part, so ranks that are threads of
/// one process must make them concurrently.
pub fn on_every_rank<C, R, F>(ranks: &mut [C], f: F) -> Vec<R>
where
    C: Send,
    R: Send,
    F: Fn(&mut C) -> R + Sync,
{
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks.iter_mut().map(|c| s.spawn(move || f(c))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    #[test]
    fn constructing_without_a_gpu_is_an_error_that_says_why() {
        if gpu_probe::probe().is_available() {
            return; // Covered by `jizhi-tune gpu-check` on GPU machines.
        }
        let err = nccl_group(&[0]).expect_err("no GPU here");
        let msg = err.to_string();
        assert!(matches!(err, CollectiveError::Gpu(_)), "{msg}");
        assert!(msg.contains("no GPU: "), "{msg}");
        let err = NcclCollective::from_rank(0, 0, 1, &NcclId::from_bytes([0; NCCL_ID_BYTES]))
            .expect_err("no GPU here");
        assert!(err.to_string().contains("no GPU: "), "{err}");
        assert!(NcclId::new().is_err());
    }

    #[test]
    fn device_lists_are_checked_before_any_gpu_work() {
        let empty = nccl_group(&[]).expect_err("empty");
        assert!(matches!(empty, CollectiveError::Invalid(_)), "{empty}");
        let twice = nccl_group(&[0, 1, 0]).expect_err("duplicate");
        assert!(
            twice.to_string().contains("device 0 is listed twice"),
            "{twice}"
        );
        let missing = check_devices(&[0, 3], 2).expect_err("out of range");
        assert!(
            missing.to_string().contains("device 3 does not exist"),
            "{missing}"
        );
        assert!(check_devices(&[1, 0], 2).is_ok());
    }

    #[test]
    fn ranks_outside_the_world_are_refused() {
        let id = NcclId::from_bytes([7; NCCL_ID_BYTES]);
        for (rank, world) in [(1, 1), (0, 0), (5, 4)] {
            let err = NcclCollective::from_rank(0, rank, world, &id).expect_err("bad rank");
            assert!(matches!(err, CollectiveError::Invalid(_)), "{err}");
        }
    }

    #[test]
    fn payload_types_map_to_nccl_types_of_the_same_width() {
        let (mut a, mut b, mut c) = ([0f32; 3], [f16::ZERO; 3], [bf16::ZERO; 3]);
        let cases = [
            (Payload::F32(&mut a), sys::ncclDataType_t::ncclFloat32, 4),
            (Payload::F16(&mut b), sys::ncclDataType_t::ncclFloat16, 2),
            (Payload::Bf16(&mut c), sys::ncclDataType_t::ncclBfloat16, 2),
        ];
        for (payload, dtype, width) in cases {
            assert_eq!(nccl_dtype(&payload), dtype);
            assert_eq!(payload.bytes(), 3 * width);
        }
    }

    #[test]
    fn hierarchy_split_forms_groups_of_k_and_one_leader_each() {
        let world = 8;
        let k = 4;
        let splits: Vec<_> = (0..world)
            .map(|r| hierarchy_split(r, world, k).expect("valid"))
            .collect();
        assert_eq!(
            splits.iter().map(|s| s.group_color).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1, 1]
        );
        assert_eq!(
            splits.iter().map(|s| s.group_key).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1, 2, 3]
        );
        let leaders: Vec<_> = splits
            .iter()
            .enumerate()
            .filter(|(_, s)| s.leader_color.is_some())
            .map(|(r, s)| (r, s.leader_key))
            .collect();
        assert_eq!(leaders, [(0, 0), (4, 1)]);
        // k = 1: every rank leads its own group; k = world: one group, one leader.
        assert!((0..3).all(|r| hierarchy_split(r, 3, 1).expect("k=1").leader_color == Some(0)));
        let one = hierarchy_split(2, 3, 3).expect("k=world");
        assert_eq!(
            (one.group_color, one.group_key, one.leader_color),
            (0, 2, None)
        );
    }

    #[test]
    fn hierarchy_split_refuses_groups_that_do_not_tile_the_world() {
        for (rank, world, k) in [(0, 6, 4), (0, 4, 0), (4, 4, 2)] {
            let err = hierarchy_split(rank, world, k).expect_err("invalid");
            assert!(matches!(err, CollectiveError::Invalid(_)), "{err}");
        }
    }

    #[test]
    fn ids_survive_the_trip_through_bytes() {
        let mut bytes = [0u8; NCCL_ID_BYTES];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 37 % 256) as u8; // includes bytes >= 128 (negative as a signed c_char)
        }
        let id = NcclId::from_bytes(bytes);
        let back = NcclId::from_sys(&id.to_sys());
        assert_eq!(back.as_bytes(), &bytes);
    }

    #[test]
    fn nccl_errors_name_the_call_the_status_and_nccl_s_text() {
        assert!(nccl_check("ncclAllReduce", sys::ncclResult_t::ncclSuccess).is_ok());
        let err = nccl_error(
            "ncclAllReduce",
            sys::ncclResult_t::ncclInvalidArgument,
            "invalid argument (run with NCCL_DEBUG=WARN for details)",
        );
        assert!(matches!(err, CollectiveError::Gpu(_)));
        assert_eq!(
            err.to_string(),
            "GPU collective: ncclAllReduce: ncclInvalidArgument: invalid argument \
             (run with NCCL_DEBUG=WARN for details)"
        );
    }

    #[test]
    fn on_every_rank_runs_ranks_concurrently_in_rank_order() {
        // The ranks meet at a barrier: run one after another, this would never finish.
        let barrier = std::sync::Barrier::new(4);
        let mut ranks: Vec<usize> = (0..4).collect();
        let out = on_every_rank(&mut ranks, |r| {
            barrier.wait();
            *r *= 10;
            *r + 1
        });
        assert_eq!(out, [1, 11, 21, 31]);
        assert_eq!(ranks, [0, 10, 20, 30]);
    }
}
