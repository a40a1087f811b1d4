// Encryption of a qcow2 image (qcow2.rst "crypt_method" and "Full disk encryption header pointer"): method 2 is
// LUKS, its header and key material in clusters the header extension points at, data sectors enciphered with
// IVs from host offsets; method 1 is QEMU's legacy AES-CBC with IVs from guest offsets, read-only as in QEMU.
// The image is unlocked when it is opened with passphrases in scope (ImageKeys); without them its metadata is
// readable and its data is not.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>The encryption of one open qcow2 image, and the views its encrypted data is read and written through.</summary>
internal sealed class Qcow2Encryption : IDisposable
{
    public const uint AesMethod = 1, LuksMethod = 2;
    private readonly string _path;
    private readonly SectorCipher? _cipher;
    private readonly EncryptedStorage? _luksData;

    private Qcow2Encryption(string path, uint method, LuksHeader? luks, long headerOffset, SectorCipher? cipher, IStorage data)
    {
        _path = path;
        Method = method;
        Luks = luks;
        HeaderOffset = headerOffset;
        _cipher = cipher;
        if (cipher != null && method == LuksMethod) _luksData = new EncryptedStorage(data, cipher);
    }

    /// <summary>1 (legacy AES) or 2 (LUKS).</summary>
    public uint Method { get; }
    /// <summary>The LUKS header (method 2).</summary>
    public LuksHeader? Luks { get; }
    /// <summary>Host offset of the LUKS header (method 2).</summary>
    public long HeaderOffset { get; }
    /// <summary>True once a passphrase unlocked the image.</summary>
    public bool Unlocked => _cipher != null;

    /// <summary>
    /// The encryption <paramref name="header"/> declares, unlocked with the passphrases in scope when there are any
    /// (a wrong one is an error now, not at the first read); null for an unencrypted image.
    /// </summary>
    public static Qcow2Encryption? Open(Qcow2Header header, IStorage file, IStorage data, string path, SectorCipher? unlocked = null)
    {
        var passphrases = ImageKeys.Current;
        if (header.CryptMethod != LuksMethod && header.Extensions.Any(e => e.Type == Qcow2HeaderExtension.FullDiskEncryptionType))
            throw VDiskException.Corrupt(path, $"the image has a full disk encryption header extension, but its crypt_method is {header.CryptMethod}, not 2 (LUKS); QEMU refuses it too.");
        switch (header.CryptMethod)
        {
            case 0:
                return null;
            case AesMethod:
                var aes = unlocked ?? (passphrases.Count > 0 ? SectorCipher.LegacyQcowAes(passphrases[0]) : null);
                return new Qcow2Encryption(path, AesMethod, null, 0, aes, data);
            default:
                var (offset, length) = HeaderPointer(header, file, path);
                var luks = Crypto.Luks.ReadHeader(file, offset, path);
                if (luks.RegionLength > length)
                    throw VDiskException.Corrupt(path, $"the LUKS header at 0x{offset:x} needs {luks.RegionLength} bytes, but the qcow2 encryption header extension gives it only {length}.");
                var cipher = unlocked ?? (passphrases.Count > 0 ? Crypto.Luks.Unlock(file, offset, passphrases, path) : null);
                return new Qcow2Encryption(path, LuksMethod, luks, offset, cipher, data);
        }
    }

    /// <summary>The LUKS header's place in the file, from the full disk encryption header extension.</summary>
    public static (long Offset, long Length) HeaderPointer(Qcow2Header header, IStorage file, string path)
    {
        var extension = header.Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.FullDiskEncryptionType)
            ?? throw VDiskException.Corrupt(path, "the image is LUKS-encrypted (crypt_method 2) but has no full disk encryption header extension.");
        if (extension.Data.Length < 16)
            throw VDiskException.Corrupt(path, $"the full disk encryption header extension is {extension.Data.Length} bytes long; it must be 16.");
        ulong offset = BinaryPrimitives.ReadUInt64BigEndian(extension.Data);
        ulong length = BinaryPrimitives.ReadUInt64BigEndian(extension.Data.AsSpan(8));
        if (offset % (ulong)header.ClusterSize != 0 || length < LuksHeader.Size || offset > (ulong)file.Length || length > (ulong)file.Length - offset)
            throw VDiskException.Corrupt(path, $"the full disk encryption header extension points at {length} bytes at 0x{offset:x}, which is not a cluster-aligned LUKS header inside the {file.Length}-byte file.");
        return ((long)offset, (long)length);
    }

    /// <summary>
    /// The view that reads and writes the data at host offset h of a mapping that starts at guest offset
    /// h + <paramref name="guestMinusHost"/>. Without a passphrase the data cannot be read: PassphraseRequired.
    /// </summary>
    public IStorage DataView(IStorage data, long guestMinusHost)
    {
        if (_cipher is null) throw PassphraseRequired();
        return _luksData ?? new EncryptedStorage(data, _cipher, guestMinusHost);
    }

    /// <summary>
    /// Like <see cref="DataView"/>, but without a passphrase the view still maps (where the data lies, as Get-VDiskMap
    /// shows it) and only its reads and writes fail with PassphraseRequired.
    /// </summary>
    public IStorage MappingView(IStorage data, long guestMinusHost)
        => _cipher is null ? new LockedStorage(data, this) : DataView(data, guestMinusHost);

    private VDiskException PassphraseRequired() => new(VDiskErrorKind.PassphraseRequired, _path,
        $"{_path} is encrypted ({FormatName}); its data cannot be read or written without its passphrase (-Passphrase, -PassphraseFile).");

    // Encrypted data with no key: its place is known, its content is not (and a host hole in it is not zeroes).
    private sealed class LockedStorage(IStorage inner, Qcow2Encryption owner) : StorageWrapper(inner)
    {
        public override void ReadAt(long offset, Span<byte> buffer) => throw owner.PassphraseRequired();
        public override void WriteAt(long offset, ReadOnlySpan<byte> data) => throw owner.PassphraseRequired();
        public override void WriteZeroes(long offset, long length) => throw owner.PassphraseRequired();
        public override void Discard(long offset, long length) => throw owner.PassphraseRequired();
        public override bool TryGetExtent(long offset, out bool isData, out long length)
        {
            isData = true;
            length = 0;
            return false;
        }
        public override void Dispose() { }
    }

    /// <summary>"luks" or "aes", as qemu-img info names them.</summary>
    public string FormatName => Method == LuksMethod ? "luks" : "aes";

    /// <summary>Zeroes the key.</summary>
    public void Dispose() => _cipher?.Dispose();
}
