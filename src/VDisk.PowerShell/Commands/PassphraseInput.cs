// Passphrases the PowerShell way (issue "Encrypted images"): a SecureString, or a PSCredential's password (the
// transformation below), or the first line of a file as QEMU's secret,file= reads it. Plain strings are not
// accepted, so a passphrase is never typed on a command line; none is ever written to a message or a log.
using System.Management.Automation;
using System.Runtime.InteropServices;
using System.Security;
using VDisk.Engine.Crypto;

namespace VDisk.PowerShell.Commands;

/// <summary>Lets a <see cref="PSCredential"/> stand for its password where a SecureString passphrase is expected.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class PassphraseTransformationAttribute : ArgumentTransformationAttribute
{
    /// <inheritdoc/>
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData) => inputData switch
    {
        PSObject wrapped => Transform(engineIntrinsics, wrapped.BaseObject),
        PSCredential credential => credential.Password,
        object[] many => many.Select(item => Transform(engineIntrinsics, item)).ToArray(),
        _ => inputData,
    };
}

/// <summary>Turns passphrase parameters into engine <see cref="Passphrase"/> objects.</summary>
internal static class PassphraseInput
{
    /// <summary>The bytes of a SecureString (UTF-8), copied once into pinned memory; the intermediate copies are zeroed.</summary>
    public static Passphrase FromSecureString(SecureString secure)
    {
        IntPtr unmanaged = Marshal.SecureStringToGlobalAllocUnicode(secure);
        var chars = GC.AllocateArray<char>(secure.Length, pinned: true);
        try
        {
            Marshal.Copy(unmanaged, chars, 0, chars.Length);
            return Passphrase.FromChars(chars);
        }
        finally
        {
            Array.Clear(chars);
            Marshal.ZeroFreeGlobalAllocUnicode(unmanaged);
        }
    }
}
