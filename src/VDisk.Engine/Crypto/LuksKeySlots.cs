// Adding and removing LUKS1 key slots in place (LUKS1 On-Disk Format Specification 1.2.3, section 3.2 "new key
// setting" and 3.3 "key revocation"; qemu's crypto/block-luks.c qcrypto_block_luks_amend_add_keyslot and
// qcrypto_block_luks_erase_key, as `qemu-img amend -o state=active|inactive` drives them), ordered for power loss:
// - add: the salt, iterations and material are written and flushed while the slot is still inactive; then the
//   4-byte state (aligned, inside one sector) turns it active, and is flushed. A crash leaves the slot inactive or
//   complete.
// - remove: the 4-byte state turns inactive and is flushed first; only then is the material overwritten with random
//   bytes and the salt and iterations cleared. A crash leaves the slot active and whole, or inactive.
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Crypto;

public static partial class Luks
{
    /// <summary>
    /// Adds <paramref name="added"/> in the first inactive key slot (or in <paramref name="slot"/>, which must be
    /// inactive), after unlocking with <paramref name="existing"/>. Returns the slot index.
    /// </summary>
    public static int AddKeySlot(IStorage storage, long headerOffset, IReadOnlyList<Passphrase> existing, Passphrase added, TimeSpan iterTime, int? slot, string path)
    {
        ArgumentNullException.ThrowIfNull(added);
        var header = ReadHeader(storage, headerOffset, path);
        int index;
        if (slot is { } wanted)
        {
            CheckIndex(wanted, path);
            if (header.KeySlots[wanted].Active) throw VDiskException.Invalid(path, $"{path}: LUKS key slot {wanted} is active; refusing to overwrite it.");
            index = wanted;
        }
        else
        {
            index = Array.FindIndex(header.KeySlots, s => !s.Active);
            if (index < 0) throw VDiskException.Invalid(path, $"{path}: all {LuksHeader.SlotCount} LUKS key slots are active; remove one first.");
        }
        var masterKey = UnlockMasterKey(storage, headerOffset, header, existing, path);
        try
        {
            var s = header.KeySlots[index];
            var material = MakeSlot(header, s, masterKey, added, iterTime);
            storage.WriteAt(headerOffset + (long)s.MaterialSector * LuksHeader.SectorSize, material);
            s.State = LuksHeader.SlotInactive;
            WriteSlotRecord(storage, headerOffset, index, s);
            storage.Flush();
            WriteState(storage, headerOffset, index, LuksHeader.SlotActive);
            storage.Flush();
            return index;
        }
        finally { CryptographicOperations.ZeroMemory(masterKey); }
    }

    /// <summary>
    /// Deactivates the key slots that <paramref name="removed"/> opens (or slot <paramref name="slot"/>; with both, the slot
    /// must be one <paramref name="removed"/> opens), after unlocking with <paramref name="existing"/>, like qemu-img amend
    /// encrypt.state=inactive. Refuses to leave no active slot. Returns the slots removed.
    /// </summary>
    public static IReadOnlyList<int> RemoveKeySlots(IStorage storage, long headerOffset, IReadOnlyList<Passphrase> existing, Passphrase? removed, int? slot, string path)
    {
        if (removed is null && slot is null) throw VDiskException.Invalid(path, "Name the LUKS key slot or the passphrase to remove.");
        var header = ReadHeader(storage, headerOffset, path);
        if (slot is { } s0)
        {
            CheckIndex(s0, path);
            if (!header.KeySlots[s0].Active) throw VDiskException.Invalid(path, $"{path}: LUKS key slot {s0} is not active.");
        }
        var masterKey = UnlockMasterKey(storage, headerOffset, header, existing, path);
        CryptographicOperations.ZeroMemory(masterKey);

        var targets = new List<int>();
        for (int i = 0; i < LuksHeader.SlotCount; i++)
        {
            if (!header.KeySlots[i].Active || (slot is { } only && only != i)) continue;
            if (removed is null) { targets.Add(i); continue; }
            var key = TryOpenSlot(storage, headerOffset, header, i, removed, path);
            if (key is null) continue;
            CryptographicOperations.ZeroMemory(key);
            targets.Add(i);
        }
        if (targets.Count == 0)
            throw new VDiskException(VDiskErrorKind.WrongPassphrase, path, slot is { } n
                ? $"{path}: the passphrase to remove does not open LUKS key slot {n}."
                : $"{path}: the passphrase to remove opens none of the {header.KeySlots.Count(k => k.Active)} active LUKS key slots.");
        if (targets.Count == header.KeySlots.Count(k => k.Active))
            throw VDiskException.Invalid(path, $"{path}: removing LUKS key slot(s) {string.Join(", ", targets)} would leave no active key slot, and the data could never be opened again; refusing.");

        foreach (int i in targets) WriteState(storage, headerOffset, i, LuksHeader.SlotInactive);
        storage.Flush();
        foreach (int i in targets)
        {
            var s = header.KeySlots[i];
            var garbage = RandomNumberGenerator.GetBytes(header.MaterialLength(i));
            storage.WriteAt(headerOffset + (long)s.MaterialSector * LuksHeader.SectorSize, garbage);
            s.State = LuksHeader.SlotInactive;
            s.Iterations = 0;
            s.Salt = new byte[LuksHeader.SaltSize];
            WriteSlotRecord(storage, headerOffset, i, s);
        }
        storage.Flush();
        return targets;
    }

    private static void CheckIndex(int slot, string path)
    {
        if (slot is < 0 or >= LuksHeader.SlotCount)
            throw VDiskException.Invalid(path, $"LUKS key slot {slot} does not exist (0 to {LuksHeader.SlotCount - 1}).");
    }

    private static void WriteSlotRecord(IStorage storage, long headerOffset, int index, LuksHeader.KeySlot slot)
    {
        Span<byte> record = stackalloc byte[LuksHeader.SlotRecordSize];
        LuksHeader.WriteSlot(slot, record);
        storage.WriteAt(headerOffset + LuksHeader.SlotRecordOffset(index), record);
    }

    private static void WriteState(IStorage storage, long headerOffset, int index, uint state)
    {
        Span<byte> bytes = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, state);
        storage.WriteAt(headerOffset + LuksHeader.SlotRecordOffset(index), bytes);
    }
}
