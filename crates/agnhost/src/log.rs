//! Log lines on stderr in Go's `log` format (`2006/01/02 15:04:05 msg`),
//! which is what tests reading a pod's log expect from agnhost.

/// Writes one line.
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let now = jiff::Zoned::now();
    eprintln!("{} {args}", now.strftime("%Y/%m/%d %H:%M:%S"));
}
