// Replacing an existing destination (-Force) without harming a running VM (qemu-img create and convert refuse the
// same way: "Failed to get "write" lock"). Before the first byte of the new image is written, QEMU's write locks
// (ImageLocks) are taken on the file it will replace, so an image that a VM, qemu-img or another VDisk run has open
// is refused with InUse whatever -Force says; and they are held until the new file has been renamed over the old
// one, so no VM can open the old file in between and go on writing into a deleted inode. Files an output rewrites
// in place under their final names (VMDK extent files) are checked the same way up front; the writer then locks
// each again before emptying it (FileStorage.Create).
using Microsoft.Win32.SafeHandles;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>QEMU-compatible write locks on the existing file an output replaces, held until it has been replaced.</summary>
internal sealed class ReplacementLock : IDisposable
{
    private readonly SafeFileHandle? _held;

    private ReplacementLock(SafeFileHandle? held) => _held = held;

    /// <summary>
    /// Locks <paramref name="destination"/> if it exists, after checking each of <paramref name="rewrittenInPlace"/>.
    /// Throws <see cref="VDiskErrorKind.InUse"/> when another process holds any of them.
    /// </summary>
    public static ReplacementLock Acquire(string destination, IEnumerable<string> rewrittenInPlace)
    {
        foreach (string file in rewrittenInPlace)
            Hold(file)?.Dispose();
        return new ReplacementLock(Hold(destination));
    }

    /// <summary>Releases the locks (after the new file has been renamed into place, or the operation failed).</summary>
    public void Dispose() => _held?.Dispose();

    private static SafeFileHandle? Hold(string path)
    {
        if (HostFileInfo.Of(path).Type != HostFileType.Regular) return null; // nothing to protect (or no OFD locks on this host)
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            return null; // removed meanwhile: nothing left to protect
        }
        try
        {
            ImageLocks.Acquire(handle, path, ImageLockMode.Write);
            return handle;
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.InUse)
        {
            handle.Dispose();
            throw new VDiskException(VDiskErrorKind.InUse, path, $"{e.Message} It was not replaced: -Force never replaces an image in use.", e);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }
}
