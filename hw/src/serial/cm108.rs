//! CM108/CM119 USB sound-card GPIO (URI, RIM-Lite, AIOC and home-built
//! interfaces): PTT by writing an HID output report to `/dev/hidrawN`, COR
//! from the HID input report the chip sends whenever its button pins change.
//!
//! Output report (5 bytes): `00 00 <gpio values> <direction mask> 00`; GPIO n
//! (1-based) is bit n−1, so the usual PTT on GPIO3 is mask `0x04`. Input
//! report: byte 0 holds the button pins; COR is usually wired to VOL_DN
//! (`0x02`). The device is found by path or by vendor/product id, scanning
//! `/sys/class/hidraw/*/device/uevent` for `HID_ID=<bus>:<vendor>:<product>`.
//!
//! [`output_report`], [`InputReport::cor`] and [`parse_hid_id`] are pure and
//! never panic; [`run_cm108`] is the async loop on an open fd, so tests can
//! hand it one end of a seqpacket socketpair instead of a hidraw node.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::port::{self, FdIo};
use super::{ControlBackend, ControlEvent, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// C-Media's USB vendor id.
pub const CMEDIA_VENDOR_ID: u16 = 0x0d8c;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cm108Error {
    #[error("HID input report is empty")]
    EmptyReport,
    #[error("GPIO {0} does not exist; CM108/CM119 GPIOs are 1..=8")]
    BadGpio(u8),
}

/// The 5-byte output report that drives `ptt_gpio` to `level`.
pub fn output_report(ptt_gpio: u8, level: bool) -> Result<[u8; 5], Cm108Error> {
    if !(1..=8).contains(&ptt_gpio) {
        return Err(Cm108Error::BadGpio(ptt_gpio));
    }
    let mask = 1u8 << (ptt_gpio - 1);
    Ok([0, 0, if level { mask } else { 0 }, mask, 0])
}

/// A received HID input report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputReport {
    pub buttons: u8,
}

impl InputReport {
    pub fn parse(bytes: &[u8]) -> Result<InputReport, Cm108Error> {
        match bytes.first() {
            Some(&buttons) => Ok(InputReport { buttons }),
            None => Err(Cm108Error::EmptyReport),
        }
    }

    /// Squelch open, given the COR bit mask and polarity.
    pub fn cor(&self, cor_bit: u8, invert: bool) -> bool {
        (self.buttons & cor_bit != 0) != invert
    }
}

/// Parses the `HID_ID=bus:vendor:product` line of a hidraw uevent file.
pub fn parse_hid_id(uevent: &str) -> Option<(u16, u16)> {
    let id = uevent.lines().find_map(|l| l.strip_prefix("HID_ID="))?;
    let mut parts = id.trim().split(':');
    let _bus = parts.next()?;
    let vendor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let product = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((u16::try_from(vendor).ok()?, u16::try_from(product).ok()?))
}

/// Finds the hidraw device node with `vendor`/`product` (`product` `None`
/// matches any), scanning `<sys_class_hidraw>/*/device/uevent`. Returns
/// `/dev/<name>`. The first match in name order wins.
pub fn find_hidraw(sys_class_hidraw: &Path, vendor: u16, product: Option<u16>) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_hidraw)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let uevent =
            std::fs::read_to_string(sys_class_hidraw.join(&name).join("device/uevent")).ok()?;
        let (v, p) = parse_hid_id(&uevent)?;
        (v == vendor && product.is_none_or(|want| want == p))
            .then(|| PathBuf::from("/dev").join(&name))
    })
}

/// A CM108/CM119 sound card's GPIO.
///
/// TOML: `kind = "cm108"`, then either `device = "/dev/hidraw0"` or the ids
/// to look for: `vendor_id` (0x0d8c), `product_id` (absent = any C-Media
/// product); optionally `ptt_gpio` (3), `cor_bit` (0x02, VOL_DN),
/// `cor_invert` (false), `ptt_invert` (false). A `device` wins over ids.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cm108Config {
    #[serde(default)]
    pub device: Option<PathBuf>,
    #[serde(default = "default_vendor_id")]
    pub vendor_id: u16,
    #[serde(default)]
    pub product_id: Option<u16>,
    #[serde(default = "default_ptt_gpio")]
    pub ptt_gpio: u8,
    #[serde(default)]
    pub ptt_invert: bool,
    #[serde(default = "default_cor_bit")]
    pub cor_bit: u8,
    #[serde(default)]
    pub cor_invert: bool,
}

fn default_vendor_id() -> u16 {
    CMEDIA_VENDOR_ID
}
fn default_ptt_gpio() -> u8 {
    3
}
fn default_cor_bit() -> u8 {
    0x02
}

impl Default for Cm108Config {
    fn default() -> Self {
        Cm108Config {
            device: None,
            vendor_id: default_vendor_id(),
            product_id: None,
            ptt_gpio: default_ptt_gpio(),
            ptt_invert: false,
            cor_bit: default_cor_bit(),
            cor_invert: false,
        }
    }
}

/// Runs PTT and COR over an open hidraw fd (or a stand-in) until cancelled
/// (`Ok`, PTT released) or the device fails or `device` vanishes (`Err`).
pub async fn run_cm108(
    fd: OwnedFd,
    config: &Cm108Config,
    device: Option<&Path>,
    io: &mut ControlIo,
    cancel: CancellationToken,
) -> Result<(), LinkError> {
    let what = device
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "cm108".into());
    let io_err = |source: io::Error| LinkError::Io {
        what: what.clone(),
        source,
    };
    let report = |keyed: bool| {
        output_report(config.ptt_gpio, keyed != config.ptt_invert)
            .map_err(|e| LinkError::Protocol(format!("cm108 config: {e}")))
    };
    let hid = FdIo::new(fd).map_err(io_err)?;
    hid.write_all(&report(false)?).await.map_err(io_err)?;
    io.emit(ControlEvent::Up).await;
    let mut keyed = false;
    let mut cor: Option<bool> = None;
    let mut ptt_open = true;
    let mut buf = [0u8; 64];
    let result: Result<(), LinkError> = async {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = io.ptt.changed(), if ptt_open => {
                    ptt_open = changed.is_ok();
                    let on = ptt_open && *io.ptt.borrow_and_update();
                    if on != keyed {
                        hid.write_all(&report(on)?).await.map_err(io_err)?;
                        keyed = on;
                        io.emit(ControlEvent::Ptt(on)).await;
                    }
                }
                read = hid.read(&mut buf) => {
                    let n = read.map_err(io_err)?;
                    if n == 0 {
                        return Err(io_err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    match InputReport::parse(&buf[..n]) {
                        Ok(r) => {
                            let open = r.cor(config.cor_bit, config.cor_invert);
                            if cor != Some(open) {
                                cor = Some(open);
                                io.emit(ControlEvent::Cor(open)).await;
                            }
                        }
                        Err(e) => tracing::warn!(device = %what, "cm108: {e}"),
                    }
                }
                e = super::lines::watch_opt(device) => return Err(e),
            }
        }
    }
    .await;
    if keyed {
        if let Ok(r) = report(false) {
            let _ = hid.write_all(&r).await;
        }
        io.emit(ControlEvent::Ptt(false)).await;
    }
    result
}

/// [`ControlBackend`] for a CM108/CM119 GPIO.
pub struct Cm108Backend {
    config: Cm108Config,
    sys_class_hidraw: PathBuf,
}

impl Cm108Backend {
    pub fn new(config: Cm108Config) -> Cm108Backend {
        Cm108Backend {
            config,
            sys_class_hidraw: PathBuf::from("/sys/class/hidraw"),
        }
    }

    /// The hidraw node to open: the configured path, or the first matching
    /// device.
    fn locate(&self) -> Option<PathBuf> {
        self.config.device.clone().or_else(|| {
            find_hidraw(
                &self.sys_class_hidraw,
                self.config.vendor_id,
                self.config.product_id,
            )
        })
    }
}

impl ControlBackend for Cm108Backend {
    fn describe(&self) -> String {
        match &self.config.device {
            Some(p) => format!("cm108 {}", p.display()),
            None => format!(
                "cm108 {:04x}:{}",
                self.config.vendor_id,
                self.config
                    .product_id
                    .map_or("*".to_string(), |p| format!("{p:04x}"))
            ),
        }
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            // Wait for the card to be plugged in (by path or by id).
            let path = loop {
                if let Some(p) = self.locate().filter(|p| p.exists()) {
                    break p;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(port::PATH_CHECK) => {}
                }
            };
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|source| LinkError::Open {
                    what: path.display().to_string(),
                    source,
                })?;
            run_cm108(file.into(), &self.config, Some(&path), io, cancel).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_report_sets_gpio_bit() {
        assert_eq!(output_report(3, true), Ok([0, 0, 0x04, 0x04, 0]));
        assert_eq!(output_report(3, false), Ok([0, 0, 0, 0x04, 0]));
        assert_eq!(output_report(1, true), Ok([0, 0, 0x01, 0x01, 0]));
        assert_eq!(output_report(0, true), Err(Cm108Error::BadGpio(0)));
        assert_eq!(output_report(9, true), Err(Cm108Error::BadGpio(9)));
    }

    #[test]
    fn input_report_cor_with_polarity() {
        let r = InputReport::parse(&[0x02, 0, 0, 0]).unwrap();
        assert!(r.cor(0x02, false));
        assert!(!r.cor(0x02, true));
        assert!(!r.cor(0x01, false));
        assert_eq!(InputReport::parse(&[]), Err(Cm108Error::EmptyReport));
    }

    #[test]
    fn hid_id_parsing() {
        let uevent = "DRIVER=hid-generic\nHID_ID=0003:00000D8C:0000013C\nHID_NAME=C-Media\n";
        assert_eq!(parse_hid_id(uevent), Some((0x0d8c, 0x013c)));
        assert_eq!(parse_hid_id("HID_ID=0003:zz:01"), None);
        assert_eq!(parse_hid_id("HID_ID=0003:1FFFF:01"), None);
        assert_eq!(parse_hid_id("nothing"), None);
    }

    #[test]
    fn finds_device_by_id_in_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("cm108-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (name, id) in [
            ("hidraw0", "0003:0000046D:0000C52B"),
            ("hidraw1", "0003:00000D8C:00000012"),
            ("hidraw2", "0003:00000D8C:0000013C"),
        ] {
            let dir = root.join(name).join("device");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("uevent"), format!("HID_ID={id}\n")).unwrap();
        }
        assert_eq!(
            find_hidraw(&root, 0x0d8c, Some(0x013c)),
            Some(PathBuf::from("/dev/hidraw2"))
        );
        assert_eq!(
            find_hidraw(&root, 0x0d8c, None),
            Some(PathBuf::from("/dev/hidraw1"))
        );
        assert_eq!(find_hidraw(&root, 0x1234, None), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
