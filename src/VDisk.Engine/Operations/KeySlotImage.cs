// Key slots of a LUKS-encrypted qcow2 image (qemu-img amend's encrypt.keyslot, encrypt.state, encrypt.new-secret and
// encrypt.old-secret): a passphrase is added to a free slot or removed, unlocking with the passphrases in scope
// (ImageKeys). The image is opened for writing, so a VM holding it is refused; the LUKS area is changed in the
// crash-safe order of Luks.AddKeySlot and Luks.RemoveKeySlots.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.Engine.Operations;

/// <summary>Adds and removes the passphrases of LUKS-encrypted qcow2 images.</summary>
public static class KeySlotImage
{
    /// <summary>Adds <paramref name="added"/> in a free key slot (or <paramref name="slot"/>); returns the slot used.</summary>
    public static int Add(string path, Passphrase added, TimeSpan iterTime, int? slot = null, ImageFormat? format = null)
        => WithLuks(path, format, (driver, encryption) =>
            Luks.AddKeySlot(driver.Storage, encryption.HeaderOffset, ImageKeys.Current, added, iterTime, slot, driver.Storage.Name));

    /// <summary>
    /// Deactivates the key slots <paramref name="removed"/> opens, or slot <paramref name="slot"/>; the last active slot
    /// is never removed. Returns the slots removed.
    /// </summary>
    public static IReadOnlyList<int> Remove(string path, Passphrase? removed, int? slot = null, ImageFormat? format = null)
        => WithLuks(path, format, (driver, encryption) =>
            Luks.RemoveKeySlots(driver.Storage, encryption.HeaderOffset, ImageKeys.Current, removed, slot, driver.Storage.Name));

    private static T WithLuks<T>(string path, ImageFormat? format, Func<Qcow2Driver, Qcow2Encryption, T> change)
    {
        path = Path.GetFullPath(path);
        using var driver = ImageChain.OpenFile(path, format, writable: true);
        if (driver is not Qcow2Driver { Encryption: { Method: Qcow2Encryption.LuksMethod } encryption } qcow2)
            throw VDiskException.Invalid(path, $"{path} is not a LUKS-encrypted qcow2 image; only those have key slots.");
        var result = change(qcow2, encryption);
        qcow2.Storage.Flush();
        return result;
    }
}
