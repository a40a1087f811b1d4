// LUKS1 volumes as QEMU makes and opens them (LUKS1 On-Disk Format Specification 1.2.3, sections 3.1 "Initialisation"
// (format), 3.2 "new key setting" (store a key slot) and 3.3 "master key recovery" (unlock); qemu's
// crypto/block-luks.c: qcrypto_block_luks_create lays the region out with slot 0's material at 4096 and each slot's
// area key_bytes × 4000 rounded up to 4096 bytes, payload_offset at the end; qcrypto_block_luks_load_key tries
// slots in order and checks the master-key digest).
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Crypto;

/// <summary>Options for <see cref="Luks.Format"/>.</summary>
public sealed record LuksFormatOptions
{
    /// <summary>Cipher, mode, IV generator and hash; qemu-img's default aes-256-xts-plain64 with sha256.</summary>
    public LuksCipherSpec Spec { get; init; } = LuksCipherSpec.QemuDefault;

    /// <summary>
    /// Time PBKDF2 should take to open the key slot (qemu's encrypt.iter-time, default 2000 ms). Iterations are calibrated
    /// to it and never below 1000; the master-key digest uses a 1/8 of its calibrated count, at least 1000.
    /// </summary>
    public TimeSpan IterTime { get; init; } = TimeSpan.FromSeconds(2);
}

/// <summary>Makes, opens and changes the key slots of LUKS1 regions (QEMU's luks format and qcow2's LUKS encryption).</summary>
public static partial class Luks
{
    /// <summary>Where qemu puts slot 0's key material, and the alignment of every slot area.</summary>
    internal const int KeySlotAlignment = 4096;

    /// <summary>
    /// Makes a new region (header and 8 key-slot areas laid out as qemu does) with a random master key, slot 0 holding
    /// <paramref name="passphrase"/>. Returns the region bytes (payload_offset × 512 long); <paramref name="cipher"/> is the
    /// data cipher for the new master key (the caller disposes it).
    /// </summary>
    public static byte[] Format(LuksFormatOptions options, Passphrase passphrase, out SectorCipher cipher)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(passphrase);
        var spec = options.Spec;
        if ((spec.Problem() ?? spec.FormatProblem()) is { } problem) throw VDiskException.Invalid(null, problem);
        int keyBytes = spec.KeyBytes;
        // QEMU encrypts a slot's key material in whole 512-byte sectors and aborts (an assertion in crypto/block.c) on
        // material that is not: aes-192 outside XTS (24 x 4000 bytes). Such an image could not be opened by qemu-img.
        if ((long)keyBytes * LuksHeader.Stripes % LuksHeader.SectorSize != 0)
            throw VDiskException.Invalid(null, $"LUKS cipher {spec} is not supported for new images: its key material is not whole 512-byte sectors, which QEMU cannot open; use aes-192 with xts, or aes-128/aes-256.");
        long areaBytes = AreaBytes(keyBytes);
        uint firstSector = KeySlotAlignment / LuksHeader.SectorSize;
        var slots = new LuksHeader.KeySlot[LuksHeader.SlotCount];
        for (int i = 0; i < slots.Length; i++)
            slots[i] = new LuksHeader.KeySlot { MaterialSector = (uint)(firstSector + i * areaBytes / LuksHeader.SectorSize) };
        uint payloadSector = (uint)(firstSector + LuksHeader.SlotCount * areaBytes / LuksHeader.SectorSize);

        var masterKey = GC.AllocateArray<byte>(keyBytes, pinned: true);
        try
        {
            RandomNumberGenerator.Fill(masterKey);
            var digestSalt = RandomNumberGenerator.GetBytes(LuksHeader.SaltSize);
            var (_, digestCalibrated) = Pbkdf.Calibrate(spec.Hash, LuksHeader.DigestSize, options.IterTime);
            int digestIterations = Pbkdf.DigestIterations(digestCalibrated);
            var digest = new byte[LuksHeader.DigestSize];
            Pbkdf.Derive(spec.Hash, masterKey, digestSalt, digestIterations, digest, null);
            var header = new LuksHeader(spec, payloadSector, digest, digestSalt, (uint)digestIterations, Guid.NewGuid().ToString("D"), slots);

            var region = new byte[header.RegionLength];
            var material = MakeSlot(header, slots[0], masterKey, passphrase, options.IterTime);
            material.CopyTo(region.AsSpan((int)((long)slots[0].MaterialSector * LuksHeader.SectorSize)));
            slots[0].State = LuksHeader.SlotActive;
            header.Write(region);
            cipher = SectorCipher.Create(spec, masterKey);
            return region;
        }
        finally { CryptographicOperations.ZeroMemory(masterKey); }
    }

    /// <summary>Reads and checks the LUKS header at <paramref name="headerOffset"/>; a truncated region is Corrupt.</summary>
    public static LuksHeader ReadHeader(IStorage storage, long headerOffset, string path)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentOutOfRangeException.ThrowIfNegative(headerOffset);
        long length = storage.Length;
        if (length - headerOffset < LuksHeader.Size)
            throw VDiskException.Corrupt(path, $"the LUKS header at offset {headerOffset} is truncated (the file is {length} bytes).");
        var bytes = new byte[LuksHeader.Size];
        storage.ReadAt(headerOffset, bytes);
        var header = LuksHeader.Parse(bytes, path);
        if (length - headerOffset < header.RegionLength)
            throw VDiskException.Corrupt(path, $"the LUKS key material region ({header.RegionLength} bytes at offset {headerOffset}) is truncated (the file is {length} bytes).");
        return header;
    }

    /// <summary>
    /// Opens the region at <paramref name="headerOffset"/>: tries every passphrase against every active key slot and
    /// returns the data cipher. No passphrase is <see cref="VDiskErrorKind.PassphraseRequired"/>; none that opens a slot
    /// is <see cref="VDiskErrorKind.WrongPassphrase"/>; a damaged header is <see cref="VDiskErrorKind.Corrupt"/>.
    /// </summary>
    public static SectorCipher Unlock(IStorage storage, long headerOffset, IReadOnlyList<Passphrase> passphrases, string path)
    {
        var header = ReadHeader(storage, headerOffset, path);
        var masterKey = UnlockMasterKey(storage, headerOffset, header, passphrases, path);
        try { return SectorCipher.Create(header.Spec, masterKey); }
        finally { CryptographicOperations.ZeroMemory(masterKey); }
    }

    /// <summary>The master key (pinned; the caller zeroes it) that one of <paramref name="passphrases"/> opens.</summary>
    internal static byte[] UnlockMasterKey(IStorage storage, long headerOffset, LuksHeader header, IReadOnlyList<Passphrase> passphrases, string path)
    {
        ArgumentNullException.ThrowIfNull(passphrases);
        if (passphrases.Count == 0)
            throw new VDiskException(VDiskErrorKind.PassphraseRequired, path, $"{path}: the image is encrypted (LUKS); a passphrase is needed to open it.");
        int active = header.KeySlots.Count(s => s.Active);
        foreach (var passphrase in passphrases)
            for (int i = 0; i < LuksHeader.SlotCount; i++)
                if (header.KeySlots[i].Active && TryOpenSlot(storage, headerOffset, header, i, passphrase, path) is { } key)
                    return key;
        string given = passphrases.Count == 1 ? "The passphrase" : $"None of the {passphrases.Count} passphrases";
        throw new VDiskException(VDiskErrorKind.WrongPassphrase, path,
            $"{path}: {given} given opens no key slot of the LUKS header (tried {active} active key slots).");
    }

    /// <summary>
    /// Opens slot <paramref name="slot"/> with <paramref name="passphrase"/> (PBKDF2, decrypt the material, AF-merge, check the
    /// master-key digest). Returns the master key in a pinned array, or null when it does not open.
    /// </summary>
    internal static byte[]? TryOpenSlot(IStorage storage, long headerOffset, LuksHeader header, int slot, Passphrase passphrase, string path)
    {
        var s = header.KeySlots[slot];
        var spec = header.Spec;
        int keyBytes = header.KeyBytes;
        var derived = GC.AllocateArray<byte>(keyBytes, pinned: true);
        var material = GC.AllocateArray<byte>(header.MaterialLength(slot), pinned: true);
        var candidate = GC.AllocateArray<byte>(keyBytes, pinned: true);
        Span<byte> digest = stackalloc byte[LuksHeader.DigestSize];
        try
        {
            Pbkdf.Derive(spec.Hash, passphrase.Bytes, s.Salt, (int)s.Iterations, derived, path);
            storage.ReadAt(headerOffset + (long)s.MaterialSector * LuksHeader.SectorSize, material);
            using (var slotCipher = SectorCipher.Create(spec, derived))
                slotCipher.TransformUnits(0, material, encrypt: false);
            AfSplitter.Merge(spec.Hash, material, (int)s.StripeCount, candidate);
            Pbkdf.Derive(spec.Hash, candidate, header.MasterKeyDigestSalt.Span, header.MasterKeyDigestIterations, digest, path);
            if (CryptographicOperations.FixedTimeEquals(digest, header.MasterKeyDigest.Span)) return candidate;
            CryptographicOperations.ZeroMemory(candidate);
            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(derived);
            CryptographicOperations.ZeroMemory(material);
        }
    }

    /// <summary>
    /// Fills <paramref name="slot"/> for <paramref name="passphrase"/> (a fresh salt, calibrated iterations) and returns the
    /// encrypted key material (AF-split master key) to store at its offset. The slot's state is left as it is.
    /// </summary>
    internal static byte[] MakeSlot(LuksHeader header, LuksHeader.KeySlot slot, ReadOnlySpan<byte> masterKey, Passphrase passphrase, TimeSpan iterTime)
    {
        var spec = header.Spec;
        int keyBytes = header.KeyBytes;
        var (iterations, _) = Pbkdf.Calibrate(spec.Hash, keyBytes, iterTime);
        slot.Iterations = (uint)iterations;
        slot.Salt = RandomNumberGenerator.GetBytes(LuksHeader.SaltSize);
        slot.StripeCount = LuksHeader.Stripes;
        var derived = GC.AllocateArray<byte>(keyBytes, pinned: true);
        var material = GC.AllocateArray<byte>(keyBytes * LuksHeader.Stripes, pinned: true);
        try
        {
            Pbkdf.Derive(spec.Hash, passphrase.Bytes, slot.Salt, iterations, derived, null);
            AfSplitter.Split(spec.Hash, masterKey, LuksHeader.Stripes, material);
            using (var slotCipher = SectorCipher.Create(spec, derived))
                slotCipher.TransformUnits(0, material, encrypt: true);
            return material; // encrypted now: no longer secret
        }
        catch
        {
            CryptographicOperations.ZeroMemory(material);
            throw;
        }
        finally { CryptographicOperations.ZeroMemory(derived); }
    }

    /// <summary>One key slot area: key_bytes × 4000 rounded up to 4096 bytes (qemu's qcrypto_block_luks_splitkeylen_sectors).</summary>
    private static long AreaBytes(int keyBytes) => ((long)keyBytes * LuksHeader.Stripes + KeySlotAlignment - 1) / KeySlotAlignment * KeySlotAlignment;
}
