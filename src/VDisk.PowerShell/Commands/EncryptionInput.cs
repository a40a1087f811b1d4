// The encryption parameters of the cmdlets that write encrypted images (New-VDisk, Convert-VDisk, Backup-VDisk):
// qemu-img's LUKS options, spelled as one cipher name the way cryptsetup and Get-VDisk show it.
using VDisk.Engine.Crypto;

namespace VDisk.PowerShell.Commands;

/// <summary>Builds engine LUKS options from cmdlet parameters.</summary>
internal static class EncryptionInput
{
    /// <summary>qemu-img's default cipher.</summary>
    public const string DefaultCipher = LuksCipherNames.Default;
    /// <summary>qemu-img's default hash.</summary>
    public const string DefaultHash = "sha256";
    /// <summary>qemu-img's default encrypt.iter-time.</summary>
    public const int DefaultIterTimeMilliseconds = 2000;

    /// <summary>The parameters that only mean something with -Encrypt.</summary>
    public static readonly string[] Parameters = { "Passphrase", "PassphraseFile", "Cipher", "HashAlgorithm", "IterTimeMilliseconds" };

    /// <summary>
    /// LUKS options from a cipher name (cipher-keybits-mode-ivgen, the IV generator essiv:hash for ESSIV, e.g.
    /// aes-128-cbc-essiv:sha256), the key derivation hash and its time. A name that does not parse is InvalidArgument.
    /// </summary>
    public static LuksFormatOptions Options(string cipher, string hash, int iterTimeMilliseconds) =>
        new() { Spec = LuksCipherNames.Parse(cipher, hash), IterTime = TimeSpan.FromMilliseconds(iterTimeMilliseconds) };
}
