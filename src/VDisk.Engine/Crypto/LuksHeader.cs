// The LUKS1 partition header, "phdr" (LUKS1 On-Disk Format Specification 1.2.3, section 2.4, figures 1 and 2): 592
// bytes, big-endian, 8 key slots of 48 bytes from offset 208. Parse checks what qemu's crypto/block-luks.c
// (qcrypto_block_luks_check_header) checks: magic, version, NUL-terminated names, a supported cipher, every slot's
// state and stripes, an active slot's iterations, and that slot material lies after the header, before the payload
// and does not overlap another slot.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>One key slot as <see cref="LuksHeader.Slots"/> reports it; <paramref name="MaterialOffset"/> is in bytes from the header's start.</summary>
public sealed record LuksKeySlotInfo(int Index, bool Active, int Iterations, long MaterialOffset, int Stripes);

/// <summary>The 592-byte LUKS1 header.</summary>
public sealed class LuksHeader
{
    /// <summary>Bytes of the header.</summary>
    public const int Size = 592;
    /// <summary>Number of key slots.</summary>
    public const int SlotCount = 8;
    /// <summary>The stripes qemu and cryptsetup use (and qemu requires).</summary>
    public const int Stripes = 4000;
    /// <summary>Salt and master-key digest sizes.</summary>
    public const int SaltSize = 32, DigestSize = 20;
    /// <summary>Key slot states.</summary>
    public const uint SlotActive = 0x00AC71F3, SlotInactive = 0x0000DEAD;

    internal const int SectorSize = 512;
    private const int NameSize = 32, UuidSize = 40;
    private const int OffVersion = 6, OffCipher = 8, OffMode = 40, OffHash = 72, OffPayload = 104, OffKeyBytes = 108,
        OffDigest = 112, OffDigestSalt = 132, OffDigestIter = 164, OffUuid = 168, OffSlots = 208, SlotSize = 48;
    private const int SlotOffIterations = 4, SlotOffSalt = 8, SlotOffMaterial = 40, SlotOffStripes = 44;
    private static ReadOnlySpan<byte> Magic => [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE];

    /// <summary>A key slot's fields (mutable for the key slot operations).</summary>
    internal sealed class KeySlot
    {
        public uint State = SlotInactive;
        public uint Iterations;
        public byte[] Salt = new byte[SaltSize];
        public uint MaterialSector;
        public uint StripeCount = Stripes;
        public bool Active => State == SlotActive;
    }

    internal LuksHeader(LuksCipherSpec spec, uint payloadSector, byte[] digest, byte[] digestSalt, uint digestIterations, string uuid, KeySlot[] slots)
    {
        Spec = spec;
        PayloadSector = payloadSector;
        MasterKeyDigest = digest;
        MasterKeyDigestSalt = digestSalt;
        MasterKeyDigestIterations = (int)digestIterations;
        Uuid = uuid;
        KeySlots = slots;
    }

    /// <summary>Cipher, mode, IV generator and hash.</summary>
    public LuksCipherSpec Spec { get; }
    /// <summary>The volume UUID (text as stored).</summary>
    public string Uuid { get; }
    /// <summary>payload_offset in 512-byte sectors.</summary>
    public uint PayloadSector { get; }
    /// <summary>payload_offset × 512: the header and all key material areas, as qemu lays them out.</summary>
    public long RegionLength => (long)PayloadSector * SectorSize;
    /// <summary>Bytes of the master key (key_bytes).</summary>
    public int KeyBytes => Spec.KeyBytes;
    /// <summary>PBKDF2 of the master key that proves a candidate right (mk_digest).</summary>
    public ReadOnlyMemory<byte> MasterKeyDigest { get; }
    /// <summary>The salt of <see cref="MasterKeyDigest"/>.</summary>
    public ReadOnlyMemory<byte> MasterKeyDigestSalt { get; }
    /// <summary>The iterations of <see cref="MasterKeyDigest"/>.</summary>
    public int MasterKeyDigestIterations { get; }
    /// <summary>The 8 key slots.</summary>
    public IReadOnlyList<LuksKeySlotInfo> Slots => KeySlots.Select((s, i) =>
        new LuksKeySlotInfo(i, s.Active, (int)Math.Min(s.Iterations, int.MaxValue), (long)s.MaterialSector * SectorSize, (int)s.StripeCount)).ToList();

    internal KeySlot[] KeySlots { get; }

    /// <summary>Bytes of one slot's key material (key_bytes × stripes).</summary>
    internal int MaterialLength(int slot) => KeyBytes * (int)KeySlots[slot].StripeCount;

    /// <summary>Offset of a slot's 48-byte record in the header (its first 4 bytes are the state).</summary>
    internal static int SlotRecordOffset(int slot) => OffSlots + slot * SlotSize;

    /// <summary>Parses and checks a header; anything wrong is <see cref="VDiskErrorKind.Corrupt"/> (or Unsupported) naming <paramref name="path"/> and the field.</summary>
    public static LuksHeader Parse(ReadOnlySpan<byte> bytes, string path)
    {
        if (bytes.Length < Size) throw VDiskException.Corrupt(path, $"the LUKS header is truncated ({bytes.Length} of {Size} bytes).");
        if (!bytes[..6].SequenceEqual(Magic)) throw VDiskException.Corrupt(path, "the LUKS header has no LUKS magic.");
        ushort version = BinaryPrimitives.ReadUInt16BigEndian(bytes[OffVersion..]);
        if (version == 2) throw VDiskException.Unsupported(path, "LUKS version 2 is not supported (QEMU's qcow2 encryption uses LUKS1).");
        if (version != 1) throw VDiskException.Corrupt(path, $"the LUKS header version is {version}, not 1.");
        string cipher = Name(bytes.Slice(OffCipher, NameSize), "cipher_name", path);
        string mode = Name(bytes.Slice(OffMode, NameSize), "cipher_mode", path);
        string hash = Name(bytes.Slice(OffHash, NameSize), "hash_spec", path);
        uint payload = BinaryPrimitives.ReadUInt32BigEndian(bytes[OffPayload..]);
        uint keyBytes = BinaryPrimitives.ReadUInt32BigEndian(bytes[OffKeyBytes..]);
        var spec = SpecOf(cipher, mode, hash, keyBytes, path);
        uint digestIterations = BinaryPrimitives.ReadUInt32BigEndian(bytes[OffDigestIter..]);
        if (digestIterations is 0 or > int.MaxValue) throw VDiskException.Corrupt(path, $"the LUKS header's mk_digest_iter {digestIterations} is out of range.");
        string uuid = Name(bytes.Slice(OffUuid, UuidSize), "uuid", path);
        var slots = new KeySlot[SlotCount];
        for (int i = 0; i < SlotCount; i++)
        {
            var r = bytes.Slice(SlotRecordOffset(i), SlotSize);
            slots[i] = new KeySlot
            {
                State = BinaryPrimitives.ReadUInt32BigEndian(r),
                Iterations = BinaryPrimitives.ReadUInt32BigEndian(r[SlotOffIterations..]),
                Salt = r.Slice(SlotOffSalt, SaltSize).ToArray(),
                MaterialSector = BinaryPrimitives.ReadUInt32BigEndian(r[SlotOffMaterial..]),
                StripeCount = BinaryPrimitives.ReadUInt32BigEndian(r[SlotOffStripes..]),
            };
        }
        var header = new LuksHeader(spec, payload, bytes.Slice(OffDigest, DigestSize).ToArray(), bytes.Slice(OffDigestSalt, SaltSize).ToArray(),
            digestIterations, uuid, slots);
        header.CheckSlots(path);
        return header;
    }

    private void CheckSlots(string path)
    {
        const long headerSectors = (Size + SectorSize - 1) / SectorSize;
        for (int i = 0; i < SlotCount; i++)
        {
            var s = KeySlots[i];
            if (s.StripeCount != Stripes) throw VDiskException.Corrupt(path, $"LUKS key slot {i} is corrupt: stripes {s.StripeCount}, not {Stripes}.");
            if (s.State is not (SlotActive or SlotInactive)) throw VDiskException.Corrupt(path, $"LUKS key slot {i} is corrupt: its state 0x{s.State:x8} is neither active nor inactive.");
            if (s.Active && s.Iterations is 0 or > int.MaxValue) throw VDiskException.Corrupt(path, $"LUKS key slot {i} is corrupt: iterations {s.Iterations} out of range.");
            long start = s.MaterialSector, end = start + MaterialSectors(i);
            if (start < headerSectors) throw VDiskException.Corrupt(path, $"LUKS key slot {i}'s key material (sector {start}) overlaps the LUKS header.");
            if (end > PayloadSector) throw VDiskException.Corrupt(path, $"LUKS key slot {i}'s key material (sectors {start}-{end}) overlaps the payload at sector {PayloadSector}.");
            for (int j = 0; j < i; j++)
            {
                long start2 = KeySlots[j].MaterialSector, end2 = start2 + MaterialSectors(j);
                if (start < end2 && start2 < end) throw VDiskException.Corrupt(path, $"LUKS key slots {j} and {i} have overlapping key material.");
            }
        }
    }

    private long MaterialSectors(int slot) => ((long)KeyBytes * KeySlots[slot].StripeCount + SectorSize - 1) / SectorSize;

    private static string Name(ReadOnlySpan<byte> field, string name, string path)
    {
        int nul = field.IndexOf((byte)0);
        if (nul < 0) throw VDiskException.Corrupt(path, $"the LUKS header's {name} is not NUL-terminated.");
        foreach (byte b in field[..nul])
            if (b is < 0x20 or > 0x7E) throw VDiskException.Corrupt(path, $"the LUKS header's {name} is not printable ASCII.");
        return Encoding.ASCII.GetString(field[..nul]);
    }

    /// <summary>The spec of the header's names; what this engine cannot do is Unsupported, a key size that fits nothing is Corrupt.</summary>
    private static LuksCipherSpec SpecOf(string cipher, string mode, string hash, uint keyBytes, string path)
    {
        if (cipher != "aes") throw VDiskException.Unsupported(path, $"the LUKS cipher '{cipher}' is not supported (only aes).");
        int dash = mode.IndexOf('-');
        if (dash <= 0) throw VDiskException.Corrupt(path, $"the LUKS cipher_mode '{mode}' is not of the form mode-ivgen.");
        string blockMode = mode[..dash], ivgen = mode[(dash + 1)..];
        string? ivHash = null;
        int colon = ivgen.IndexOf(':');
        if (colon >= 0)
        {
            ivHash = ivgen[(colon + 1)..];
            ivgen = ivgen[..colon];
            if (ivgen != "essiv") ivHash = null; // qemu ignores a hash on the other generators
        }
        if (blockMode is not ("xts" or "cbc" or "ecb")) throw VDiskException.Unsupported(path, $"the LUKS cipher mode '{blockMode}' is not supported (xts, cbc, ecb).");
        uint oneKey = blockMode == "xts" ? keyBytes / 2 : keyBytes;
        if ((blockMode == "xts" && keyBytes % 2 != 0) || oneKey is not (16 or 24 or 32))
            throw VDiskException.Corrupt(path, $"the LUKS key_bytes {keyBytes} fits no aes-{blockMode} key.");
        var spec = new LuksCipherSpec("aes", (int)oneKey * 8, blockMode, ivgen, ivHash, hash);
        if (spec.Problem() is { } problem) throw VDiskException.Unsupported(path, problem);
        return spec;
    }

    /// <summary>Writes the whole 592-byte header into <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        if (destination.Length < Size) throw new ArgumentException($"The LUKS header needs {Size} bytes.", nameof(destination));
        destination[..Size].Clear();
        Magic.CopyTo(destination);
        BinaryPrimitives.WriteUInt16BigEndian(destination[OffVersion..], 1);
        PutName(destination.Slice(OffCipher, NameSize), Spec.Cipher);
        PutName(destination.Slice(OffMode, NameSize), Spec.HeaderMode);
        PutName(destination.Slice(OffHash, NameSize), Spec.Hash);
        BinaryPrimitives.WriteUInt32BigEndian(destination[OffPayload..], PayloadSector);
        BinaryPrimitives.WriteUInt32BigEndian(destination[OffKeyBytes..], (uint)KeyBytes);
        MasterKeyDigest.Span.CopyTo(destination[OffDigest..]);
        MasterKeyDigestSalt.Span.CopyTo(destination[OffDigestSalt..]);
        BinaryPrimitives.WriteUInt32BigEndian(destination[OffDigestIter..], (uint)MasterKeyDigestIterations);
        PutName(destination.Slice(OffUuid, UuidSize), Uuid);
        for (int i = 0; i < SlotCount; i++) WriteSlot(KeySlots[i], destination.Slice(SlotRecordOffset(i), SlotSize));
    }

    /// <summary>Writes one slot's 48-byte record.</summary>
    internal static void WriteSlot(KeySlot slot, Span<byte> record)
    {
        BinaryPrimitives.WriteUInt32BigEndian(record, slot.State);
        BinaryPrimitives.WriteUInt32BigEndian(record[SlotOffIterations..], slot.Iterations);
        slot.Salt.CopyTo(record[SlotOffSalt..]);
        BinaryPrimitives.WriteUInt32BigEndian(record[SlotOffMaterial..], slot.MaterialSector);
        BinaryPrimitives.WriteUInt32BigEndian(record[SlotOffStripes..], slot.StripeCount);
    }

    internal const int SlotRecordSize = SlotSize;

    private static void PutName(Span<byte> field, string value)
    {
        if (value.Length >= field.Length) throw new ArgumentException($"'{value}' does not fit a {field.Length}-byte LUKS field.");
        Encoding.ASCII.GetBytes(value, field);
    }
}
