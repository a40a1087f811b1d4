// Per-sector encryption of disk data as qemu's crypto/block.c does it (qcrypto_block_cipher_encrypt_helper: 512-byte
// units, unit k of a request uses the IV of sector start+k), with the IV generators of qemu's crypto/ivgen-plain.c
// (LE32 of the sector, truncated), crypto/ivgen-plain64.c (LE64) and crypto/ivgen-essiv.c (the LE64 sector encrypted
// with AES keyed by hash(whole data key); LUKS1 On-Disk Format Specification 1.2.3 lists the same generators), and
// qcow2's legacy crypt_method 1 (qemu's crypto/block-qcow.c: AES-128-CBC, key = the passphrase truncated or
// zero-padded to 16 bytes, plain64 IVs).
using System.Buffers.Binary;
using System.Security.Cryptography;
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>
/// Encrypts and decrypts 512-byte sectors in place with a LUKS cipher spec and a data key. Thread-safe: each thread
/// gets its own AES instances. The key lives in pinned memory and is zeroed by <see cref="Dispose"/>.
/// </summary>
public sealed class SectorCipher : IDisposable
{
    /// <summary>The sector (IV unit) size.</summary>
    public const int SectorSize = 512;

    private const int ChunkSectors = 128; // 64 KiB per batch bounds the per-thread scratch buffers

    private enum Iv { Plain, Plain64, Essiv }
    private enum ModeKind { Xts, Cbc, Ecb }

    private readonly byte[] _key;
    private readonly byte[]? _essivKey;
    private readonly Iv _iv;
    private readonly ModeKind _mode;
    private readonly ThreadLocal<Worker> _workers;
    private bool _disposed;

    private SectorCipher(LuksCipherSpec spec, ReadOnlySpan<byte> key)
    {
        Spec = spec;
        _key = GC.AllocateArray<byte>(key.Length, pinned: true);
        key.CopyTo(_key);
        _mode = spec.Mode switch { "xts" => ModeKind.Xts, "cbc" => ModeKind.Cbc, _ => ModeKind.Ecb };
        _iv = spec.IvGenerator switch { "plain" => Iv.Plain, "plain64" => Iv.Plain64, _ => Iv.Essiv };
        if (_iv == Iv.Essiv)
        {
            _essivKey = GC.AllocateArray<byte>(LuksCipherSpec.EssivHashSize(spec.IvHash!)!.Value, pinned: true);
            switch (spec.IvHash)
            {
                case "md5": MD5.HashData(_key, _essivKey); break;
                case "sha256": SHA256.HashData(_key, _essivKey); break;
                default: throw VDiskException.Invalid(null, $"LUKS essiv hash '{spec.IvHash}' gives no AES key size.");
            }
        }
        _workers = new ThreadLocal<Worker>(() => new Worker(this), trackAllValues: true);
    }

    /// <summary>The cipher spec.</summary>
    public LuksCipherSpec Spec { get; }

    /// <summary>The key buffer, for tests that check it is zeroed on dispose.</summary>
    internal byte[] KeyBuffer => _key;

    /// <summary>The ESSIV key buffer (null without essiv), for tests.</summary>
    internal byte[]? EssivKeyBuffer => _essivKey;

    /// <summary>
    /// A cipher for <paramref name="spec"/> with data key <paramref name="key"/> (<see cref="LuksCipherSpec.KeyBytes"/>
    /// long; for XTS the first half encrypts data, the second the tweak). The key is copied.
    /// </summary>
    public static SectorCipher Create(LuksCipherSpec spec, ReadOnlySpan<byte> key)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("The sector cipher assumes a little-endian machine.");
        if (spec.Problem() is { } problem) throw VDiskException.Invalid(null, problem);
        if (key.Length != spec.KeyBytes)
            throw VDiskException.Invalid(null, $"{spec} needs a {spec.KeyBytes}-byte key, not {key.Length} bytes.");
        return new SectorCipher(spec, key);
    }

    /// <summary>
    /// qcow2's legacy AES (crypt_method 1): AES-128-CBC with plain64 IVs of the guest sector, the key being the
    /// passphrase's bytes up to its first NUL, truncated or zero-padded to 16 bytes (qemu's block-qcow.c).
    /// </summary>
    public static SectorCipher LegacyQcowAes(Passphrase passphrase)
    {
        ArgumentNullException.ThrowIfNull(passphrase);
        var key = GC.AllocateArray<byte>(16, pinned: true);
        try
        {
            var bytes = passphrase.Bytes;
            int nul = bytes.IndexOf((byte)0);
            if (nul >= 0) bytes = bytes[..nul];
            bytes[..Math.Min(16, bytes.Length)].CopyTo(key);
            return Create(new LuksCipherSpec("aes", 128, "cbc", "plain64", null, "sha256"), key);
        }
        finally { CryptographicOperations.ZeroMemory(key); }
    }

    /// <summary>
    /// Encrypts <paramref name="data"/> in place; its length is a multiple of <see cref="SectorSize"/>, and sector k of
    /// it uses the IV of sector <paramref name="firstSector"/> + k.
    /// </summary>
    public void Encrypt(long firstSector, Span<byte> data) => Transform(firstSector, data, encrypt: true, wholeSectors: true);

    /// <summary>Decrypts <paramref name="data"/> in place (the inverse of <see cref="Encrypt"/>).</summary>
    public void Decrypt(long firstSector, Span<byte> data) => Transform(firstSector, data, encrypt: false, wholeSectors: true);

    /// <summary>
    /// Like Encrypt/Decrypt, but the last unit may be a partial sector (a multiple of 16 bytes), as LUKS key material of
    /// aes-192 is (qemu's helper cuts the final unit short).
    /// </summary>
    internal void TransformUnits(long firstSector, Span<byte> data, bool encrypt) => Transform(firstSector, data, encrypt, wholeSectors: false);

    /// <summary>Transforms one unit with a caller-given raw 16-byte IV (for the published XTS vectors).</summary>
    internal void TransformWithIv(ReadOnlySpan<byte> iv, Span<byte> unit, bool encrypt)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (unit.Length > ChunkSectors * SectorSize || unit.Length % SectorModes.Block != 0 || iv.Length != SectorModes.Block)
            throw new ArgumentException("One unit of at most 64 KiB, whole 16-byte blocks, and a 16-byte IV.");
        var w = _workers.Value!;
        iv.CopyTo(w.Ivs);
        Run(w, w.Ivs.AsSpan(0, SectorModes.Block), unit, unit.Length, encrypt);
    }

    private void Transform(long firstSector, Span<byte> data, bool encrypt, bool wholeSectors)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(firstSector);
        if (wholeSectors ? data.Length % SectorSize != 0 : data.Length % SectorModes.Block != 0)
            throw new ArgumentException($"The data length {data.Length} is not a multiple of {(wholeSectors ? SectorSize : SectorModes.Block)}.", nameof(data));
        var w = _workers.Value!;
        const int chunk = ChunkSectors * SectorSize;
        for (int at = 0; at < data.Length; at += chunk)
        {
            var part = data.Slice(at, Math.Min(chunk, data.Length - at));
            int units = (part.Length + SectorSize - 1) / SectorSize;
            var ivs = w.Ivs.AsSpan(0, units * SectorModes.Block);
            if (_mode != ModeKind.Ecb) FillIvs(w, firstSector + at / SectorSize, ivs);
            Run(w, ivs, part, SectorSize, encrypt);
        }
    }

    private void Run(Worker w, Span<byte> ivs, Span<byte> data, int unit, bool encrypt)
    {
        switch (_mode)
        {
            case ModeKind.Xts: SectorModes.Xts(w.Data, w.Tweak!, ivs, data, unit, w.Scratch, encrypt); break;
            case ModeKind.Cbc when encrypt: SectorModes.CbcEncrypt(w.Data, ivs, data, unit, w.Scratch); break;
            case ModeKind.Cbc: SectorModes.CbcDecrypt(w.Data, ivs, data, unit, w.Scratch); break;
            default: SectorModes.Ecb(w.Data, data, encrypt); break;
        }
    }

    private void FillIvs(Worker w, long sector, Span<byte> ivs)
    {
        ivs.Clear();
        for (int u = 0; u < ivs.Length / SectorModes.Block; u++)
        {
            var iv = ivs.Slice(u * SectorModes.Block, SectorModes.Block);
            if (_iv == Iv.Plain) BinaryPrimitives.WriteUInt32LittleEndian(iv, (uint)(sector + u));
            else BinaryPrimitives.WriteUInt64LittleEndian(iv, (ulong)(sector + u));
        }
        if (_iv == Iv.Essiv) w.Essiv!.EncryptEcb(ivs, ivs, PaddingMode.None);
    }

    /// <summary>Zeroes the key and releases every thread's AES instances.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var w in _workers.Values) w.Dispose();
        _workers.Dispose();
        CryptographicOperations.ZeroMemory(_key);
        if (_essivKey is not null) CryptographicOperations.ZeroMemory(_essivKey);
    }

    /// <summary>One thread's AES instances and scratch buffers.</summary>
    private sealed class Worker : IDisposable
    {
        public readonly Aes Data;
        public readonly Aes? Tweak;
        public readonly Aes? Essiv;
        public readonly byte[] Ivs = GC.AllocateArray<byte>(ChunkSectors * SectorModes.Block, pinned: true);
        public readonly byte[] Scratch = GC.AllocateArray<byte>(ChunkSectors * SectorSize, pinned: true);

        public Worker(SectorCipher owner)
        {
            var key = owner._key.AsSpan();
            if (owner._mode == ModeKind.Xts)
            {
                Data = NewAes(key[..(key.Length / 2)]);
                Tweak = NewAes(key[(key.Length / 2)..]);
            }
            else Data = NewAes(key);
            if (owner._essivKey is not null) Essiv = NewAes(owner._essivKey);
        }

        private static Aes NewAes(ReadOnlySpan<byte> key)
        {
            var aes = Aes.Create();
            var copy = key.ToArray();
            aes.Key = copy; // the setter keeps its own copy, which Aes.Dispose clears
            CryptographicOperations.ZeroMemory(copy);
            return aes;
        }

        public void Dispose()
        {
            Data.Dispose();
            Tweak?.Dispose();
            Essiv?.Dispose();
            CryptographicOperations.ZeroMemory(Ivs);
            CryptographicOperations.ZeroMemory(Scratch);
        }
    }
}
