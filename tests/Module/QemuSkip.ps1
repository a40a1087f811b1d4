# Dot-sourced in BeforeDiscovery by test files that need qemu-img: sets $SkipQemu. Outside CI a missing
# qemu-img skips those tests with a visible message; in CI ($env:CI = 'true') nothing is skipped, so they fail.
$SkipQemu = $env:CI -ne 'true' -and -not (Get-Command qemu-img -CommandType Application -ErrorAction Ignore)
if ($SkipQemu) {
    Write-Warning 'qemu-img is not installed: SKIPPING the qemu-img interop tests (install qemu-utils; in CI they fail instead).'
}
