//! Run-time check for a usable GPU: the CUDA driver and NCCL libraries, and the devices.
//!
//! The CUDA libraries are loaded when first used (nothing is linked at build time), and the
//! bindings panic when a library is missing. Everything that touches CUDA or NCCL therefore asks
//! [`probe`] first, which reports a missing library or device as a value.

use super::CollectiveError;
use std::ffi::CString;
use std::fmt;
use std::sync::OnceLock;

/// One CUDA device that the driver reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuDevice {
    /// Device ordinal, as CUDA numbers them.
    pub ordinal: usize,
    /// Marketing name (e.g. "NVIDIA H200").
    pub name: String,
    /// Device memory in bytes.
    pub total_mem_bytes: u64,
}

/// What a machine with a usable GPU offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    /// CUDA driver API version, e.g. "12.8".
    pub driver_version: String,
    /// NCCL version code as `ncclGetVersion` returns it (e.g. 22703 for 2.27.3).
    pub nccl_version_code: i32,
    /// The devices, in ordinal order (at least one).
    pub devices: Vec<GpuDevice>,
}

impl GpuInfo {
    /// NCCL version as "major.minor.patch".
    pub fn nccl_version(&self) -> String {
        nccl_version_string(self.nccl_version_code)
    }
}

/// The outcome of looking for a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuProbe {
    /// The driver and NCCL load and at least one device is there.
    Available(GpuInfo),
    /// Why no GPU can be used here.
    NoGpu(String),
}

impl GpuProbe {
    /// Whether GPU collectives can run here.
    pub fn is_available(&self) -> bool {
        matches!(self, GpuProbe::Available(_))
    }

    /// The GPU details, or a [`CollectiveError::Gpu`] saying why there is no GPU.
    pub fn info(&self) -> Result<&GpuInfo, CollectiveError> {
        match self {
            GpuProbe::Available(info) => Ok(info),
            GpuProbe::NoGpu(reason) => Err(CollectiveError::Gpu(format!("no GPU: {reason}"))),
        }
    }
}

impl fmt::Display for GpuProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuProbe::NoGpu(reason) => write!(f, "no GPU: {reason}"),
            GpuProbe::Available(info) => {
                let names: Vec<&str> = info.devices.iter().map(|d| d.name.as_str()).collect();
                write!(
                    f,
                    "{} GPU(s): {}; CUDA driver {}, NCCL {}",
                    info.devices.len(),
                    names.join(", "),
                    info.driver_version,
                    info.nccl_version()
                )
            }
        }
    }
}

/// Looks for the CUDA driver, NCCL and devices once per process, and returns what it found.
pub fn probe() -> &'static GpuProbe {
    static PROBE: OnceLock<GpuProbe> = OnceLock::new();
    PROBE.get_or_init(probe_uncached)
}

fn probe_uncached() -> GpuProbe {
    // The bindings panic rather than return an error when a library or one of its symbols
    // cannot be loaded (e.g. a driver older than the bindings). The library checks below
    // prevent the common case; catching the unwind turns the rest into "no GPU" as well.
    match std::panic::catch_unwind(probe_libraries) {
        Ok(probe) => probe,
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            GpuProbe::NoGpu(format!("the CUDA or NCCL library failed to load: {why}"))
        }
    }
}

/// Which of the two libraries the bindings can load.
#[derive(Debug, Clone, Copy)]
struct Libraries {
    driver: bool,
    nccl: bool,
}

fn probe_libraries() -> GpuProbe {
    // SAFETY: these only try to open the shared libraries by name (dlopen); no symbol is called.
    let libraries = unsafe {
        Libraries {
            driver: cudarc::driver::sys::is_culib_present(),
            nccl: cudarc::nccl::sys::is_culib_present(),
        }
    };
    classify(libraries, query_driver, query_nccl_version, loadable)
}

/// Decides the probe's answer from what loads; the queries run only when their library loads.
fn classify(
    libraries: Libraries,
    driver: impl FnOnce() -> Result<(String, Vec<GpuDevice>), String>,
    nccl_version: impl FnOnce() -> Result<i32, String>,
    loadable: impl Fn(&str) -> bool,
) -> GpuProbe {
    if !libraries.driver {
        return GpuProbe::NoGpu(
            "the CUDA driver library (libcuda.so) is not installed or not on the library path"
                .into(),
        );
    }
    if !libraries.nccl {
        let hint = if loadable("libnccl.so.2") {
            "; libnccl.so.2 is installed but the libnccl.so link is missing: create it in a \
             folder on LD_LIBRARY_PATH (bench/gpu_check.sh does this)"
        } else {
            ""
        };
        return GpuProbe::NoGpu(format!(
            "the NCCL library (libnccl.so) is not installed or not on the library path{hint}"
        ));
    }
    let (driver_version, devices) = match driver() {
        Ok(found) => found,
        Err(e) => return GpuProbe::NoGpu(format!("the CUDA driver reports: {e}")),
    };
    if devices.is_empty() {
        return GpuProbe::NoGpu("the CUDA driver reports no device".into());
    }
    match nccl_version() {
        Ok(nccl_version_code) => GpuProbe::Available(GpuInfo {
            driver_version,
            nccl_version_code,
            devices,
        }),
        Err(e) => GpuProbe::NoGpu(format!("NCCL does not answer: {e}")),
    }
}

/// Initialises the driver and lists the devices; only called once `libcuda` is known to load.
fn query_driver() -> Result<(String, Vec<GpuDevice>), String> {
    use cudarc::driver::result;
    result::init().map_err(|e| format!("cuInit: {e}"))?;
    let mut version = 0;
    // SAFETY: `version` is a valid out-pointer for the duration of the call.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| format!("cuDriverGetVersion: {e}"))?;
    let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let device = result::device::get(ordinal).map_err(|e| format!("cuDeviceGet: {e}"))?;
        let name = result::device::get_name(device).map_err(|e| format!("cuDeviceGetName: {e}"))?;
        // SAFETY: `device` is a handle the driver just returned.
        let total = unsafe { result::device::total_mem(device) }
            .map_err(|e| format!("cuDeviceTotalMem: {e}"))?;
        devices.push(GpuDevice {
            ordinal: ordinal as usize,
            name,
            total_mem_bytes: total as u64,
        });
    }
    Ok((driver_version_string(version), devices))
}

fn query_nccl_version() -> Result<i32, String> {
    cudarc::nccl::result::get_nccl_version()
        .map_err(|e| format!("ncclGetVersion failed ({:?})", e.0))
}

/// Whether the dynamic loader can open a library by this file name.
fn loadable(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a valid C string; a handle that opened is closed at once.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            false
        } else {
            libc::dlclose(handle);
            true
        }
    }
}

/// "major.minor" of a CUDA driver version number (12080 -> "12.8").
fn driver_version_string(code: i32) -> String {
    format!("{}.{}", code / 1000, (code % 1000) / 10)
}

/// "major.minor.patch" of an NCCL version code (22703 -> "2.27.3"; before 2.9: 2708 -> "2.7.8").
pub fn nccl_version_string(code: i32) -> String {
    if code >= 10000 {
        format!("{}.{}.{}", code / 10000, (code % 10000) / 100, code % 100)
    } else {
        format!("{}.{}.{}", code / 1000, (code % 1000) / 100, code % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> Result<(String, Vec<GpuDevice>), String> {
        Ok((
            "12.8".into(),
            vec![GpuDevice {
                ordinal: 0,
                name: "NVIDIA H200".into(),
                total_mem_bytes: 150_000_000_000,
            }],
        ))
    }

    const BOTH: Libraries = Libraries {
        driver: true,
        nccl: true,
    };

    #[test]
    fn probe_on_this_machine_answers_without_panicking_and_names_the_missing_library() {
        let found = probe();
        // SAFETY: only opens the library by name.
        let driver_here = unsafe { cudarc::driver::sys::is_culib_present() };
        if !driver_here {
            assert!(!found.is_available());
            assert!(found.to_string().starts_with("no GPU: "), "{found}");
            assert!(found.to_string().contains("libcuda"), "{found}");
            let err = found.info().expect_err("no GPU here");
            assert!(matches!(err, CollectiveError::Gpu(ref m) if m.contains("libcuda")));
        }
        // A second call gives the same answer (cached) and still does not panic.
        assert_eq!(probe(), found);
    }

    #[test]
    fn missing_driver_is_reported_before_anything_is_queried() {
        let p = classify(
            Libraries {
                driver: false,
                nccl: true,
            },
            || panic!("driver queried without libcuda"),
            || panic!("nccl queried without libcuda"),
            |_| false,
        );
        assert!(
            p.to_string().contains("CUDA driver library (libcuda.so)"),
            "{p}"
        );
    }

    #[test]
    fn missing_nccl_link_gets_a_hint_when_the_versioned_library_exists() {
        let libs = Libraries {
            driver: true,
            nccl: false,
        };
        let with = classify(libs, h200, || Ok(22703), |n| n == "libnccl.so.2");
        assert!(
            with.to_string().contains("libnccl.so link is missing"),
            "{with}"
        );
        let without = classify(libs, h200, || Ok(22703), |_| false);
        assert!(without
            .to_string()
            .contains("NCCL library (libnccl.so) is not installed"));
        assert!(!without.to_string().contains("link is missing"));
    }

    #[test]
    fn zero_devices_or_a_driver_error_is_no_gpu() {
        let none = classify(BOTH, || Ok(("12.8".into(), vec![])), || Ok(1), |_| true);
        assert_eq!(
            none,
            GpuProbe::NoGpu("the CUDA driver reports no device".into())
        );
        let err = classify(
            BOTH,
            || Err("cuInit: CUDA_ERROR_NO_DEVICE".into()),
            || Ok(1),
            |_| true,
        );
        assert!(err.to_string().contains("CUDA_ERROR_NO_DEVICE"), "{err}");
    }

    #[test]
    fn a_device_and_nccl_make_the_gpu_available() {
        let p = classify(BOTH, h200, || Ok(22703), |_| true);
        let info = p.info().expect("available");
        assert_eq!(info.devices.len(), 1);
        assert_eq!(info.nccl_version(), "2.27.3");
        assert_eq!(
            p.to_string(),
            "1 GPU(s): NVIDIA H200; CUDA driver 12.8, NCCL 2.27.3"
        );
    }

    #[test]
    fn version_codes_are_spelled_as_releases() {
        assert_eq!(nccl_version_string(21805), "2.18.5");
        assert_eq!(nccl_version_string(2708), "2.7.8");
        assert_eq!(driver_version_string(12080), "12.8");
        assert_eq!(driver_version_string(13000), "13.0");
    }

    #[test]
    fn loadable_tells_present_from_absent_libraries() {
        assert!(loadable("libc.so.6"));
        assert!(!loadable("libjizhi-no-such-library.so"));
        assert!(!loadable("bad\0name"));
    }
}
