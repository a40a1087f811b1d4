// The passphrase parameters of cmdlets that read or write the data of existing images, or of backup sets
// (issue 13): -Passphrase (SecureStrings, or PSCredentials through PassphraseTransformation) and -PassphraseFile,
// read once before any input and made available to every image the cmdlet opens (VDiskCmdletBase.Attempt).
using System.Management.Automation;
using System.Security;

namespace VDisk.PowerShell.Commands;

/// <summary>Base of image cmdlets that may need to unlock encrypted images.</summary>
public abstract class EncryptedImageInputCmdletBase : ImageInputCmdletBase
{
    /// <summary>Passphrases of encrypted images (SecureStrings or PSCredentials), each tried on every encrypted image of the chain.</summary>
    [Parameter]
    [PassphraseTransformation]
    [Alias("SourcePassphrase")]
    public SecureString[]? Passphrase { get; set; }

    /// <summary>Files whose first lines are passphrases of encrypted images.</summary>
    [Parameter]
    public string[]? PassphraseFile { get; set; }

    /// <summary>Reads the passphrases once, before any input.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        InputPassphrases = ReadPassphrases(Passphrase, PassphraseFile);
    }
}

/// <summary>Base of backup-set cmdlets that read the points of encrypted sets.</summary>
public abstract class EncryptedBackupSetCmdletBase : BackupSetCmdletBase
{
    /// <summary>The passphrase of an encrypted backup set (SecureStrings or PSCredentials); each given is tried.</summary>
    [Parameter]
    [PassphraseTransformation]
    public SecureString[]? Passphrase { get; set; }

    /// <summary>Files whose first lines are passphrases of the encrypted set.</summary>
    [Parameter]
    public string[]? PassphraseFile { get; set; }

    /// <summary>Reads the passphrases once, before any set.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        InputPassphrases = ReadPassphrases(Passphrase, PassphraseFile);
    }
}
